"""Input enhancement: SpeexDSP echo cancellation and WebRTC noise suppression on real signals,
and the config switches."""

from __future__ import annotations

import numpy as np
import soxr

from wyoming_coda.config import AudioConfig, VoiceConfig
from wyoming_coda.listen.enhance import RATE, Enhancer


def power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2))


def test_echo_of_the_server_output_is_cancelled() -> None:
    rng = np.random.default_rng(0)
    far_24k = (rng.standard_normal(24000 * 4) * 0.2).astype(np.float32)  # 4 s the server played
    enhancer = Enhancer(echo=True, suppression=False, auto_gain=False)
    assert enhancer.echo is not None
    far = soxr.resample(far_24k, 24000, RATE, quality="HQ")  # what the speaker plays, at 16 kHz
    delay = 800  # 50 ms from the speaker back into the microphone
    echo = np.concatenate([np.zeros(delay), far[:-delay]]) * 0.5
    near = (echo * 32767).astype(np.int16)
    out = []
    for i in range(0, 24000 * 4, 1920):  # 80 ms frames, played then heard
        enhancer.played(far_24k[i:i + 1920])
        out.append(enhancer.process(near[i * 2 // 3:(i + 1920) * 2 // 3]))
    cleaned = np.concatenate(out)
    tail = slice(RATE * 2, RATE * 4 - RATE // 5)  # after the filter converged
    erle = 10 * np.log10(power(near[tail]) / max(power(cleaned[tail]), 1e-9))
    assert erle > 10, f"echo return loss enhancement {erle:.1f} dB"  # measured: 26 dB


def test_noise_is_suppressed() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(RATE * 3) * 1500).astype(np.int16)
    enhancer = Enhancer(echo=False, suppression=True, auto_gain=False)
    cleaned = enhancer.process(noise)
    assert power(cleaned[RATE:]) < power(noise[RATE:]) / 4  # > 6 dB less stationary noise


def test_stages_follow_the_config() -> None:
    from wyoming_coda.listen.frontend import AudioFrontEnd

    off = AudioConfig(noise_reduction=False, auto_gain_control=False, echo_cancellation=False, vad_enabled=False)
    assert AudioFrontEnd.from_config(off, 24000, duplex=True).enhancer is None
    on = VoiceConfig(device="cpu").audio
    utterance = AudioFrontEnd.from_config(on, 24000).enhancer
    assert utterance is not None and utterance.echo is None and utterance.noise is not None  # no far end: no AEC
    duplex = AudioFrontEnd.from_config(on, 24000, duplex=True)
    assert duplex.enhancer is not None and duplex.enhancer.echo is not None
    assert duplex.vad is not None and duplex.vad.silence_ms < on.silence_duration_ms
