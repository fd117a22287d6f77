"""Speech in and out at the manager level: a transcription (format conversion, STT stream,
VAD, end of turn, audio quality) and WAV helpers. Used by the Wyoming asr service and by
`VoiceManager.process_voice_*` alike."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from .audio import AudioFormatError, StreamConverter, check_format, pcm_to_float, to_s16
from .engines.stt import SttStream
from .enhance import Enhancer
from .vad import VAD_RATE, SileroVad

END_OF_TURN_THRESHOLD = 0.6  # moving average of the end-of-turn head, as Kyutai's Unmute
END_OF_TURN_WINDOW = 4  # frames (320 ms)
CLIP_LEVEL = 0.99


@dataclass
class TextPiece:
    """Text the model produced."""

    text: str


@dataclass
class VoiceActivity:
    """Speech started or stopped at `ms` from the start of the audio."""

    started: bool
    ms: int
    source: str  # "vad" or "end-of-turn"


@dataclass
class AudioQuality:
    """Input level, clipping and speech share of one transcription."""

    level_dbfs: float
    clipping_ratio: float
    speech_ratio: float
    snr_db: float | None  # speech windows' energy over the others' (None without both kinds)


class Transcription:
    """One utterance: feed PCM in any format, read text pieces and voice activity as they come."""

    def __init__(
        self, stream: SttStream, vad: SileroVad | None, language: str, enhancer: Enhancer | None = None
    ) -> None:
        self.stream = stream
        self.vad = vad
        self.language = language
        self.enhancer = enhancer if enhancer is not None and enhancer.active else None
        self._stt_audio = StreamConverter(stream.engine.sample_rate)
        self._vad_audio = StreamConverter(VAD_RATE)
        self.pieces: list[str] = []
        self.end_of_speech = asyncio.Event()
        self.heard_speech = False
        self._end_scores: deque[float] = deque(maxlen=END_OF_TURN_WINDOW)
        self._square_sum = 0.0
        self._clipped = 0
        self._samples = 0
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)  # (audio ms at chunk end, arrival)
        self.end_of_speech_delay: float | None = None  # seconds from hearing the end of speech to saying so

    @property
    def text(self) -> str:
        return "".join(self.pieces).strip()

    def feed(self, data: bytes, rate: int, width: int, channels: int) -> list[VoiceActivity]:
        """Feed PCM; returns the VAD onsets/offsets it completes. Raises AudioFormatError."""
        check_format(rate, width, channels)
        self._measure(pcm_to_float(data, width, channels))
        self._arrivals.append((int(self._samples * 1000 / rate), time.monotonic()))
        if self.enhancer is not None:  # enhance at 16 kHz, then both paths use the result
            clean = self.enhancer.process(to_s16(self._vad_audio.convert(data, rate, width, channels)))
            data, rate, width, channels = clean.tobytes(), VAD_RATE, 2, 1
            vad_samples = clean.astype(np.float32) / 32768
        self.stream.feed(self._stt_audio.convert(data, rate, width, channels))
        if self.vad is None:
            return []
        if self.enhancer is None:
            vad_samples = self._vad_audio.convert(data, rate, width, channels)
        return [self._activity(e.kind == "started", e.ms, "vad") for e in self.vad.process(vad_samples)]

    def _measure(self, samples: np.ndarray) -> None:
        self._square_sum += float(np.dot(samples, samples))
        self._clipped += int(np.count_nonzero(np.abs(samples) >= CLIP_LEVEL))
        self._samples += samples.size

    @property
    def user_spoke(self) -> bool:
        """Whether the user may have spoken: the VAD heard speech, or there is no VAD. Words the
        model writes while the VAD hears none are not the user talking."""
        return self.vad is None or self.heard_speech

    def _activity(self, started: bool, ms: int, source: str) -> VoiceActivity:
        if started:
            self.heard_speech = True
            self.end_of_speech.clear()
        else:
            self.end_of_speech.set()
            heard = next((at for end, at in self._arrivals if end >= ms), None)
            if heard is not None and self.end_of_speech_delay is None:
                self.end_of_speech_delay = time.monotonic() - heard
        return VoiceActivity(started, ms, source)

    def quality(self) -> AudioQuality | None:
        if not self._samples:
            return None
        rms = (self._square_sum / self._samples) ** 0.5
        vad = self.vad
        return AudioQuality(
            level_dbfs=20 * float(np.log10(max(rms, 1e-9))),
            clipping_ratio=self._clipped / self._samples,
            speech_ratio=vad.speech_windows / vad.windows if vad is not None and vad.windows else 0.0,
            snr_db=vad.snr_db() if vad is not None else None,
        )

    def finish(self) -> None:
        """End of audio: flush the resampler and the model's delay."""
        self.stream.feed(self._stt_audio.flush())
        silence = self.vad.silence_run_ms / 1000 if self.vad is not None else 0.0
        self.stream.finish(silence)

    async def results(self) -> AsyncIterator[TextPiece | VoiceActivity]:
        """Text pieces, and an end-of-turn offset from the model's head, until `finish` is through."""
        frame_ms = 1000 / self.stream.engine.frame_rate
        async for output in self.stream.outputs():
            if output.text:
                self.pieces.append(output.text)
                yield TextPiece(output.text)
            if self._end_of_turn(output.end_of_turn) and not self.end_of_speech.is_set():
                yield self._activity(False, int(self.stream.frames_in * frame_ms), "end-of-turn")

    def _end_of_turn(self, score: float | None) -> bool:
        if score is None or not self.heard_speech:
            return False
        self._end_scores.append(score)
        return (
            len(self._end_scores) == END_OF_TURN_WINDOW
            and sum(self._end_scores) / END_OF_TURN_WINDOW > END_OF_TURN_THRESHOLD
        )

    async def close(self) -> None:
        await self.stream.close()


def read_wav_bytes(data: bytes) -> tuple[bytes, int, int, int]:
    """(PCM frames, rate, width, channels) of a WAV file in memory."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
    except (wave.Error, EOFError) as err:
        raise AudioFormatError(f"not a PCM WAV file ({err})") from None


def wav_bytes(pcm: bytes, rate: int, width: int = 2, channels: int = 1) -> bytes:
    """A WAV file holding `pcm`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


class WavStreamReader:
    """Splits a byte stream that starts with a WAV header into PCM chunks and its format."""

    MAX_HEADER = 1 << 16

    def __init__(self) -> None:
        self._head = b""
        self.format: tuple[int, int, int] | None = None  # rate, width, channels

    def push(self, data: bytes) -> bytes:
        """PCM bytes in `data` (nothing until the header has been read)."""
        if self.format is not None:
            return data
        self._head += data
        if len(self._head) < 12:
            return b""
        if self._head[:4] != b"RIFF" or self._head[8:12] != b"WAVE":
            raise AudioFormatError("audio stream does not start with a WAV header")
        pos, fmt = 12, None
        while pos + 8 <= len(self._head):
            chunk_id, size = self._head[pos:pos + 4], int.from_bytes(self._head[pos + 4:pos + 8], "little")
            if chunk_id == b"fmt ":
                if pos + 8 + 16 > len(self._head):
                    break
                body = self._head[pos + 8:pos + 24]
                if int.from_bytes(body[0:2], "little") != 1:
                    raise AudioFormatError("only PCM WAV audio is supported")
                channels = int.from_bytes(body[2:4], "little")
                rate = int.from_bytes(body[4:8], "little")
                width = int.from_bytes(body[14:16], "little") // 8
                fmt = (rate, width, channels)
            elif chunk_id == b"data":
                if fmt is None:
                    raise AudioFormatError("WAV data before its fmt chunk")
                self.format = fmt
                rest, self._head = self._head[pos + 8:], b""
                return rest
            pos += 8 + size + (size & 1)
        if len(self._head) > self.MAX_HEADER:
            raise AudioFormatError("WAV header too large")
        return b""
