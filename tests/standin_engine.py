"""A stand-in TTS engine of a new kind (a test double, not a model): it "speaks" a 440 Hz tone,
one 80 ms frame per word. It shows what a new engine is: this module, on the TTS role's
protocol, plus one registration (`register`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from wyoming_coda.audio import FRAME_SIZE, SAMPLE_RATE
from wyoming_coda.engines.batching import Rows
from wyoming_coda.engines.tts import UnknownVoiceError
from wyoming_coda.models.registry import Attribution, EngineRegistry, EngineSpec

VOICES = ["tone-a", "tone-b"]


class ToneStream:
    """One synthesis: a frame of tone per word."""

    def __init__(self, engine: ToneSpeech) -> None:
        self.engine = engine
        self._frames: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
        self._closed = False

    def add_text(self, text: str) -> None:
        t = np.arange(FRAME_SIZE, dtype=np.float32) / SAMPLE_RATE
        for _ in text.split():
            self._frames.put_nowait((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))

    def end_text(self) -> None:
        self._frames.put_nowait(None)

    async def audio(self) -> AsyncIterator[np.ndarray]:
        while (frame := await self._frames.get()) is not None:
            yield frame

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.engine.scheduler.release()


class ToneSpeech:
    """The engine: rows, voices, languages, as the Synthesizer protocol asks."""

    sample_rate = SAMPLE_RATE

    def __init__(self, capacity: int) -> None:
        self.languages = ["en"]
        self.capacity = capacity
        self.scheduler = Rows(capacity)

    def voices(self) -> list[str]:
        return list(VOICES)

    async def check_voice(self, name: str) -> None:
        if name not in VOICES:
            raise UnknownVoiceError(f"unknown voice {name!r}")

    async def open(self, name: str) -> ToneStream:
        await self.check_voice(name)
        await self.scheduler.acquire()
        return ToneStream(self)

    async def close(self) -> None:
        return None


def register(registry: EngineRegistry, profile: str) -> None:
    """The one registration: this engine serves TTS in `profile`."""
    registry.register(profile, EngineSpec(
        "tts", "Tone TTS", lambda request: ToneSpeech(request.config.tts.batch_size), lambda _source: ["en"],
        Attribution("Tone", "https://example.invalid/tone"), checkpoint=False))

