"""The audio front end of every input path (the asr service, the voice-stream API and duplex
sessions): format conversion, input measurements (level, clipping), enhancement at 16 kHz
(echo cancellation, noise suppression, gain) and Silero VAD, then the audio at the model's rate.

Enhancement and VAD run at 16 kHz, the rate both libraries are built for; with enhancement on,
the model hears the enhanced audio too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import Resampler, check_format, pcm_to_float, to_s16
from ..config import AudioConfig
from .enhance import Enhancer
from .vad import VAD_RATE, SileroVad, VadEvent

CLIP_LEVEL = 0.99
DUPLEX_SILENCE_MS = 300  # a duplex user pauses briefly before the assistant may speak again


@dataclass
class AudioQuality:
    """Input level, clipping and speech share of one stream."""

    level_dbfs: float
    clipping_ratio: float
    speech_ratio: float
    snr_db: float | None  # speech windows' energy over the others' (None without both kinds)


@dataclass
class FrontEndOutput:
    """One processed chunk."""

    audio: np.ndarray  # float32 mono at the model's rate
    vad: list[VadEvent]  # speech onsets / offsets this chunk completed


class AudioFrontEnd:
    """Input audio of one stream → float32 at `model_rate`, VAD events and measurements."""

    def __init__(
        self, model_rate: int, enhancer: Enhancer | None, vad: SileroVad | None, exact: bool = False
    ) -> None:
        self.model_rate = model_rate
        self.enhancer = enhancer if enhancer is not None and enhancer.active else None
        self.vad = vad
        self._to_model = Resampler(model_rate, exact)
        self._to_voice = Resampler(VAD_RATE, exact)
        self._square_sum = 0.0
        self._clipped = 0
        self.samples = 0

    @classmethod
    def from_config(cls, config: AudioConfig, model_rate: int, duplex: bool = False) -> AudioFrontEnd:
        """The stages the `audio` config enables. Duplex sessions cancel the echo of what the
        server plays, end speech after a short pause, and resample frame by frame."""
        enhancer = Enhancer(duplex and config.echo_cancellation, config.noise_reduction, config.auto_gain_control)
        silence = DUPLEX_SILENCE_MS if duplex else config.silence_duration_ms
        vad = SileroVad(config.vad_threshold, silence) if config.vad_enabled else None
        return cls(model_rate, enhancer, vad, exact=duplex)

    @property
    def in_speech(self) -> bool:
        return self.vad is not None and self.vad.in_speech

    @property
    def silence_run_ms(self) -> int:
        """Non-speech at the end of the audio so far (0 without VAD)."""
        return self.vad.silence_run_ms if self.vad is not None else 0

    def process(self, data: bytes, rate: int, width: int, channels: int) -> FrontEndOutput:
        """Interleaved PCM in any supported format. Raises AudioFormatError."""
        check_format(rate, width, channels)
        samples = pcm_to_float(data, width, channels)
        self._measure(samples)
        if self.enhancer is None and self.vad is None:
            return FrontEndOutput(self._to_model.resample(samples, rate), [])
        voice = self._to_voice.resample(samples, rate)
        if self.enhancer is not None:
            voice = self.enhancer.process(to_s16(voice)).astype(np.float32) / 32768
            audio = self._to_model.resample(voice, VAD_RATE)
        else:
            audio = self._to_model.resample(samples, rate)
        events = self.vad.process(voice) if self.vad is not None else []
        return FrontEndOutput(audio, events)

    def played(self, pcm_24k: np.ndarray) -> None:
        """What the server played to this client (float32 at 24 kHz), for echo cancellation."""
        if self.enhancer is not None:
            self.enhancer.played(pcm_24k)

    def flush(self) -> np.ndarray:
        """End of input: the model-rate samples still inside the resampler."""
        return self._to_model.flush()

    def _measure(self, samples: np.ndarray) -> None:
        self._square_sum += float(np.dot(samples, samples))
        self._clipped += int(np.count_nonzero(np.abs(samples) >= CLIP_LEVEL))
        self.samples += samples.size

    def quality(self) -> AudioQuality | None:
        if not self.samples:
            return None
        rms = (self._square_sum / self.samples) ** 0.5
        vad = self.vad
        return AudioQuality(
            level_dbfs=20 * float(np.log10(max(rms, 1e-9))),
            clipping_ratio=self._clipped / self.samples,
            speech_ratio=vad.speech_windows / vad.windows if vad is not None and vad.windows else 0.0,
            snr_db=vad.snr_db() if vad is not None else None,
        )
