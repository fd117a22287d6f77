"""Test speech made with espeak-ng and sox (Debian packages installed by script/test)."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

SENTENCES = (
    "turn on the kitchen light please",
    "what is the weather like today",
    "set a timer for five minutes",
    "lock the front door",
    "play some jazz music in the living room",
    "set the thermostat to twenty degrees",
    "open the garage door",
    "what time is it",
)


def make_speech(
    out: Path, text: str, rate: int = 16000, channels: int = 1, silence_after: float = 0.0,
    voice: str = "en-us", speed: int = 160,
) -> Path:
    """Speak `text` into a 16-bit WAV at `rate` Hz with `channels` channels (espeak-ng's `voice`,
    `speed` words per minute)."""
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    effects = ["pad", "0", str(silence_after)] if silence_after else []
    subprocess.run(
        ["sox", str(raw), "-r", str(rate), "-c", str(channels), "-b", "16", "-e", "signed-integer",
         str(out), *effects],
        check=True,
    )
    raw.unlink()
    return out


def make_silence(out: Path, seconds: float, rate: int = 16000) -> Path:
    subprocess.run(["sox", "-n", "-r", str(rate), "-c", "1", "-b", "16", str(out), "trim", "0", str(seconds)], check=True)
    return out


def read_wav(path: Path) -> tuple[bytes, int, int, int]:
    """(frames, rate, width, channels)."""
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
