"""Silero VAD (the ONNX model shipped in the silero-vad wheel) run with onnxruntime, one
instance per audio stream, with speech onset / offset detection."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import numpy as np
import onnxruntime

from ..audio import Framer

VAD_RATE = 16000
CHUNK = 512  # 32 ms at 16 kHz, the model's native window
_CONTEXT = 64


@cache
def _session() -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    path = files("silero_vad") / "data" / "silero_vad.onnx"
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass
class VadEvent:
    """Speech started or stopped, at `ms` from the start of the stream."""

    kind: str  # "started" | "stopped"
    ms: int


class SileroVad:
    """Speech probability per 32 ms window and onset/offset events.

    Onset: `min_speech_ms` of windows above `threshold`. Offset: `silence_ms` of windows below
    `threshold - 0.15` after an onset (the usual hysteresis).
    """

    def __init__(self, threshold: float = 0.5, silence_ms: int = 1000, min_speech_ms: int = 64) -> None:
        self.threshold = threshold
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self._session = _session()
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, _CONTEXT), dtype=np.float32)
        self._framer = Framer(CHUNK)
        self._sr = np.array(VAD_RATE, dtype=np.int64)
        self.position_ms = 0
        self.in_speech = False
        self._run_ms = 0  # length of the current run of speech (before onset) or silence (after)
        self.speech_windows = 0
        self.windows = 0
        self.silence_run_ms = 0  # non-speech at the end of the audio so far
        self._energy = {True: 0.0, False: 0.0}  # summed mean-square of speech / other windows

    def snr_db(self) -> float | None:
        """Signal-to-noise estimate: mean power of speech windows over that of the others."""
        noise_windows = self.windows - self.speech_windows
        if not self.speech_windows or not noise_windows:
            return None
        speech = self._energy[True] / self.speech_windows
        noise = max(self._energy[False] / noise_windows, 1e-12)
        return 10 * float(np.log10(max(speech, 1e-12) / noise))

    def probability(self, window: np.ndarray) -> float:
        """Speech probability of one 512-sample window at 16 kHz."""
        x = np.concatenate([self._context, window[None, :]], axis=1)
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[:, -_CONTEXT:]
        return float(out[0, 0])

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        """Feed float32 mono audio at 16 kHz; returns the onsets/offsets it completes."""
        events: list[VadEvent] = []
        window_ms = CHUNK * 1000 // VAD_RATE
        for window in self._framer.push(samples):
            prob = self.probability(window)
            self.position_ms += window_ms
            self.windows += 1
            speech = prob >= self.threshold
            self.speech_windows += speech
            self._energy[speech] += float(np.dot(window, window)) / CHUNK
            self.silence_run_ms = 0 if speech else self.silence_run_ms + window_ms
            if not self.in_speech:
                self._run_ms = self._run_ms + window_ms if speech else 0
                if self._run_ms >= self.min_speech_ms:
                    self.in_speech, self._run_ms = True, 0
                    events.append(VadEvent("started", self.position_ms - self.min_speech_ms))
            else:
                quiet = prob < self.threshold - 0.15
                self._run_ms = self._run_ms + window_ms if quiet else 0
                if self._run_ms >= self.silence_ms:
                    self.in_speech, self._run_ms = False, 0
                    events.append(VadEvent("stopped", self.position_ms - self.silence_ms))
        return events
