"""Audio format conversion: PCM of any width and channel count to float32 mono, resampling
to the rate a model needs (soxr), and back to s16le; WAV files and streams; the models' audio
geometry."""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr

# The speech models' audio geometry (Mimi, the codec under Kyutai STT, TTS and Moshi; Pocket TTS too):
# 24 kHz mono, 80 ms frames. Every path that carries model audio uses these.
SAMPLE_RATE = 24000
FRAME_SIZE = 1920  # samples: 80 ms
FRAME_RATE = SAMPLE_RATE / FRAME_SIZE  # 12.5 Hz

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


class Framer:
    """Cuts a stream of float32 samples of any chunk size into frames of `size` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffer: np.ndarray = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """The frames that `samples` completes."""
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        whole = self._buffer.size // self.size * self.size
        frames = [self._buffer[i:i + self.size] for i in range(0, whole, self.size)]
        self._buffer = self._buffer[whole:]
        return frames

    def rest(self) -> np.ndarray:
        """The incomplete last frame, zero-padded (empty when there is none)."""
        rest, self._buffer = self._buffer, np.zeros(0, dtype=np.float32)
        return np.pad(rest, (0, self.size - rest.size)) if rest.size else rest


class Resampler:
    """float32 mono from any rate to `target_rate`. Streaming (soxr keeps its state across
    chunks; a new input rate restarts it), or `exact`: each chunk resampled on its own, so no
    sample waits inside the resampler (for fixed-size frames that must leave at once)."""

    def __init__(self, target_rate: int, exact: bool = False) -> None:
        self.target_rate = target_rate
        self.exact = exact
        self._rate: int | None = None
        self._stream: soxr.ResampleStream | None = None

    def resample(self, samples: np.ndarray, rate: int) -> np.ndarray:
        if rate == self.target_rate:
            return samples
        if self.exact:
            return np.asarray(soxr.resample(samples, rate, self.target_rate, quality="HQ"), dtype=np.float32)
        tail = np.zeros(0, dtype=np.float32)
        if rate != self._rate:
            tail = self.flush()
            self._rate = rate
            self._stream = soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32", quality="HQ")
        assert self._stream is not None
        out = np.asarray(self._stream.resample_chunk(samples), dtype=np.float32)
        return np.concatenate([tail, out]) if tail.size else out

    def flush(self) -> np.ndarray:
        """The samples still inside the resampler (call at the end of the stream)."""
        stream, self._stream, self._rate = self._stream, None, None
        if stream is None:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True), dtype=np.float32)


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
