"""Audio format conversion shared by every input path: PCM of any width, channel count and
rate to float32 mono at the rate a model needs (streaming, with soxr), and back to s16le."""

from __future__ import annotations

import numpy as np
import soxr

MIN_RATE, MAX_RATE = 8000, 192000
MAX_CHANNELS = 8
WIDTHS = (1, 2, 3, 4)


class AudioFormatError(ValueError):
    """Audio that cannot be converted (absurd rate, width or channel count, torn samples)."""


def check_format(rate: int, width: int, channels: int) -> None:
    """Raise AudioFormatError unless the format is one we convert."""
    if not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFormatError(f"sample rate {rate!r} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if width not in WIDTHS:
        raise AudioFormatError(f"sample width {width!r} bytes is not one of {WIDTHS}")
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"channel count {channels!r} is outside 1-{MAX_CHANNELS}")


def pcm_to_float(data: bytes, width: int, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM (u8 / s16 / s24 / s32) to float32 mono in [-1, 1]."""
    frame_bytes = width * channels
    if len(data) % frame_bytes:
        raise AudioFormatError(
            f"{len(data)} bytes is not a whole number of {width}-byte x {channels}-channel frames"
        )
    if width == 1:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    else:
        samples = np.frombuffer(data, dtype="<i4").astype(np.float32) / float(1 << 31)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples


def to_s16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] to int16 samples (clipped)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")


def float_to_s16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] to s16le bytes (clipped)."""
    return to_s16(samples).tobytes()


class StreamConverter:
    """Converts a stream of PCM chunks to float32 mono at `target_rate`, keeping resampler
    state across chunks; a chunk in another format restarts the resampler."""

    def __init__(self, target_rate: int) -> None:
        self.target_rate = target_rate
        self._format: tuple[int, int, int] | None = None
        self._resampler: soxr.ResampleStream | None = None

    def convert(self, data: bytes, rate: int, width: int, channels: int) -> np.ndarray:
        check_format(rate, width, channels)
        samples = pcm_to_float(data, width, channels)
        if (rate, width, channels) != self._format:
            tail = self.flush()
            self._format = (rate, width, channels)
            self._resampler = (
                soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32", quality="HQ")
                if rate != self.target_rate
                else None
            )
            converted = self._resample(samples)
            return np.concatenate([tail, converted]) if tail.size else converted
        return self._resample(samples)

    def _resample(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples, last=last)

    def flush(self) -> np.ndarray:
        """The samples still inside the resampler (call at the end of the stream)."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        out = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._resampler = None
        self._format = None
        return out
