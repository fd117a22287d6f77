"""Input enhancement, the spec's Audio Processor stages after format conversion: echo
cancellation of the server's own output (SpeexDSP, duplex sessions), noise suppression and
automatic gain (WebRTC), each switchable in the `audio` config section. They run at 16 kHz,
the rate both libraries are built for (and the rate Home Assistant sends)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

import numpy as np
import soxr

from ..audio import SAMPLE_RATE, to_s16

_LOGGER = logging.getLogger(__name__)

RATE = 16000
CHUNK = 160  # 10 ms, WebRTC's block
ECHO_FRAME = 320  # 20 ms
ECHO_TAIL = 4000  # 250 ms of echo path
_SET_SAMPLING_RATE = 24
_SHORTS = ctypes.POINTER(ctypes.c_int16)


@cache
def _speexdsp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        _LOGGER.warning("libspeexdsp not found (Debian: libspeexdsp1): echo cancellation is off")
        return None
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, _SHORTS, _SHORTS, _SHORTS]
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    return lib


def echo_cancellation_available() -> bool:
    return _speexdsp() is not None


class EchoCanceller:
    """SpeexDSP's adaptive echo canceller: removes the far end (what the server played) from
    the near end (the microphone)."""

    def __init__(self) -> None:
        lib = _speexdsp()
        if lib is None:
            raise RuntimeError("libspeexdsp is not installed")
        self._lib = lib
        self._state = lib.speex_echo_state_init(ECHO_FRAME, ECHO_TAIL)
        rate = ctypes.c_int(RATE)
        lib.speex_echo_ctl(self._state, _SET_SAMPLING_RATE, ctypes.byref(rate))
        self._far: np.ndarray = np.zeros(0, dtype=np.int16)
        self._near: np.ndarray = np.zeros(0, dtype=np.int16)

    def played(self, far: np.ndarray) -> None:
        """Audio the client is about to play (s16 at 16 kHz): the reference to cancel."""
        self._far = np.concatenate([self._far, far])[-RATE * 2:]

    def process(self, near: np.ndarray) -> np.ndarray:
        """Microphone audio (s16 at 16 kHz) with the echo removed, in whole 20 ms frames."""
        self._near = np.concatenate([self._near, near])
        out = []
        while self._near.size >= ECHO_FRAME:
            mic, self._near = self._near[:ECHO_FRAME].copy(), self._near[ECHO_FRAME:]
            ref = self._far[:ECHO_FRAME]
            self._far = self._far[ECHO_FRAME:]
            ref = np.pad(ref, (0, ECHO_FRAME - ref.size)).astype(np.int16)
            clean = np.empty(ECHO_FRAME, dtype=np.int16)
            self._lib.speex_echo_cancellation(self._state, mic.ctypes.data_as(_SHORTS),
                                              ref.ctypes.data_as(_SHORTS), clean.ctypes.data_as(_SHORTS))
            out.append(clean)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state:
            self._lib.speex_echo_state_destroy(state)


class NoiseGain:
    """WebRTC noise suppression and automatic gain control, in 10 ms blocks."""

    def __init__(self, suppression: bool, auto_gain: bool) -> None:
        from webrtc_noise_gain import AudioProcessor

        self._processor = AudioProcessor(3 if auto_gain else 0, 2 if suppression else 0)
        self._pending = b""

    def process(self, pcm: np.ndarray) -> np.ndarray:
        data = self._pending + pcm.astype("<i2").tobytes()
        whole = len(data) // (CHUNK * 2) * CHUNK * 2
        self._pending = data[whole:]
        out = b"".join(self._processor.Process10ms(data[i:i + CHUNK * 2]).audio for i in range(0, whole, CHUNK * 2))
        return np.frombuffer(out, dtype="<i2")


class Enhancer:
    """The enabled stages in order (echo cancellation, then noise suppression / gain) on a
    16 kHz input stream; `None` stages are skipped."""

    def __init__(self, echo: bool, suppression: bool, auto_gain: bool) -> None:
        self.echo = EchoCanceller() if echo and echo_cancellation_available() else None
        self.noise = NoiseGain(suppression, auto_gain) if suppression or auto_gain else None

    @property
    def active(self) -> bool:
        return self.echo is not None or self.noise is not None

    def played(self, pcm_24k: np.ndarray) -> None:
        """The server's own output (float32 at 24 kHz), for the echo canceller."""
        if self.echo is not None:
            # chunk by chunk (no streaming latency): the reference must stay sample-aligned
            self.echo.played(to_s16(soxr.resample(pcm_24k, SAMPLE_RATE, RATE, quality="HQ")))

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """s16 mono at 16 kHz in, enhanced s16 mono at 16 kHz out (block-aligned, so lengths vary)."""
        if self.echo is not None:
            pcm = self.echo.process(pcm)
        if self.noise is not None:
            pcm = self.noise.process(pcm)
        return pcm
