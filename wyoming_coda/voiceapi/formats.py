"""The audio format of the Python voice API (`process_voice_input`, `process_voice_stream`),
set by the `audio` config section: `wav` (a WAV file, or a stream that starts with a WAV
header), raw `pcm` (s16le at `sample_rate` / `channels`), or `opus` (Ogg/Opus, 24 kHz mono).
Input in `wav` or `opus` carries its own format; answers are given at `sample_rate` /
`channels` (Opus: 24 kHz mono)."""

from __future__ import annotations

import numpy as np
import sphn

from ..audio import (
    SAMPLE_RATE,
    AudioFormatError,
    Resampler,
    WavStreamReader,
    float_to_s16,
    read_wav_bytes,
    to_s16,
    wav_bytes,
)
from ..config import AudioConfig

OPUS_RATE = SAMPLE_RATE
Pcm = tuple[bytes, int, int, int]  # s16le (or any width) bytes, rate, width, channels


class VoiceDecoder:
    """Input bytes of the configured format → PCM pieces."""

    def __init__(self, config: AudioConfig) -> None:
        self.format = config.format
        self._raw_format = (config.sample_rate, 2, config.channels)
        self._wav = WavStreamReader()
        self._opus = sphn.OpusStreamReader(OPUS_RATE) if config.format == "opus" else None
        self._rest = b""

    def push(self, data: bytes) -> Pcm | None:
        """The whole PCM frames in `data` (None while there are none yet)."""
        if self._opus is not None:
            try:
                samples = self._opus.append_bytes(data)
            except Exception as err:  # noqa: BLE001 - sphn raises plain exceptions for bad streams
                raise AudioFormatError(f"not an Ogg/Opus stream: {err}") from None
            return (to_s16(samples).tobytes(), OPUS_RATE, 2, 1) if samples.size else None
        if self.format == "wav":
            pcm = self._wav.push(data)
            if not pcm or self._wav.format is None:
                return None
            fmt = self._wav.format
        else:
            pcm, fmt = data, self._raw_format
        pcm, frame = self._rest + pcm, fmt[1] * fmt[2]
        whole = len(pcm) // frame * frame
        self._rest = pcm[whole:]
        return (pcm[:whole], *fmt) if whole else None

    def whole(self, data: bytes) -> Pcm:
        """A complete recording (`process_voice_input`)."""
        if self.format == "wav":
            return read_wav_bytes(data)
        decoded = self.push(data)
        if decoded is None:
            raise AudioFormatError(f"no {self.format} audio in {len(data)} bytes")
        return decoded


class VoiceEncoder:
    """Answer audio (float32 mono at `source_rate`) → bytes of the configured format."""

    def __init__(self, config: AudioConfig, source_rate: int) -> None:
        self.format = config.format
        self.rate = OPUS_RATE if config.format == "opus" else config.sample_rate
        self.channels = 1 if config.format == "opus" else config.channels
        self._source_rate = source_rate
        self._resampler = Resampler(self.rate)
        self._opus = sphn.OpusStreamWriter(OPUS_RATE) if config.format == "opus" else None

    def chunk(self, samples: np.ndarray) -> bytes:
        """One piece of a stream: s16le PCM (`wav`, `pcm`) or Ogg/Opus pages."""
        audio = self._resampler.resample(samples, self._source_rate)
        if self._opus is not None:
            return bytes(self._opus.append_pcm(audio))
        return self._pcm(audio)

    def file(self, frames: list[np.ndarray]) -> bytes:
        """A whole answer: a WAV file, raw PCM or an Ogg/Opus file."""
        audio = self.chunk(np.concatenate(frames)) if frames else b""
        if self._opus is None:
            audio += self._pcm(self._resampler.flush())
        return wav_bytes(audio, self.rate, 2, self.channels) if self.format == "wav" else audio

    def _pcm(self, audio: np.ndarray) -> bytes:
        """s16le, each sample repeated on every channel."""
        return float_to_s16(np.repeat(audio, self.channels))
