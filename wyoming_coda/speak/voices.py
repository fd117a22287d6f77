"""Voices cloned from a short recording: a WAV sample in the voices folder (`--data-dir`/voices
by default) becomes a voice of the CPU profile's Pocket TTS under its file name. A sample must
be a PCM WAV file of 1 to 30 seconds holding at least half a second of speech (Silero VAD);
anything else is listed like the others but refused, with the reason, when it is asked for."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

from ..audio import SAMPLE_RATE, AudioFormatError, check_format, pcm_to_float
from ..engines.tts import UnknownVoiceError
from ..listen.vad import CHUNK, VAD_RATE, SileroVad

MIN_SECONDS = 1.0
MAX_SECONDS = 30.0
MIN_SPEECH_SECONDS = 0.5


class VoiceSampleError(UnknownVoiceError):
    """A voice sample that cannot become a voice (the message says why)."""


def load_voice_sample(path: Path) -> np.ndarray:
    """The sample at `path` as float32 mono at 24 kHz; VoiceSampleError when it is not a
    usable voice sample."""
    name = path.name
    try:
        with wave.open(str(path), "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            check_format(rate, width, channels)
            samples = pcm_to_float(wav.readframes(wav.getnframes()), width, channels)
    except (wave.Error, EOFError, AudioFormatError, OSError) as err:
        raise VoiceSampleError(f"voice sample {name}: not a PCM WAV file ({err})") from None
    seconds = samples.size / rate
    if seconds < MIN_SECONDS:
        raise VoiceSampleError(f"voice sample {name} is too short: {seconds:.1f} s, at least {MIN_SECONDS:.0f} s")
    if seconds > MAX_SECONDS:
        raise VoiceSampleError(f"voice sample {name} is too long: {seconds:.1f} s, at most {MAX_SECONDS:.0f} s")
    vad = SileroVad()
    vad.process(np.asarray(soxr.resample(samples, rate, VAD_RATE), dtype=np.float32))
    speech = vad.speech_windows * CHUNK / VAD_RATE
    if speech < MIN_SPEECH_SECONDS:
        raise VoiceSampleError(f"voice sample {name} holds no speech ({speech:.1f} s found, "
                               f"at least {MIN_SPEECH_SECONDS} s needed)")
    return np.asarray(soxr.resample(samples, rate, SAMPLE_RATE), dtype=np.float32)
