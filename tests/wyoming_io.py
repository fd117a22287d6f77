"""Wyoming client helpers for the speech tests (real `wyoming` client over TCP)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from tests.speech import read_wav


@dataclass
class TranscribeResult:
    events: list[Event] = field(default_factory=list)
    sent_stop_at: int = 0  # index in events when audio-stop was sent

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.type == event_type]

    @property
    def text(self) -> str:
        (transcript,) = self.of("transcript")
        return transcript.data["text"]


async def transcribe(
    client: AsyncTcpClient, wav: Path, language: str | None = None, chunk_samples: int = 1024,
    wait_chunk_before_stop: bool = False, timeout: float = 30.0,
) -> TranscribeResult:
    """Send a WAV as Home Assistant does; collect events until transcript-stop."""
    audio, rate, width, channels = read_wav(wav)
    result = TranscribeResult()

    async def reader() -> None:
        while True:
            event = await client.read_event()
            assert event is not None, f"connection closed after {result.types}"
            result.events.append(event)
            if event.type in ("transcript-stop", "error"):
                return

    task = asyncio.create_task(reader())
    await client.write_event(Transcribe(language=language).event())
    await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
    step = chunk_samples * width * channels
    for start in range(0, len(audio), step):
        await client.write_event(AudioChunk(rate=rate, width=width, channels=channels, audio=audio[start:start + step]).event())
    if wait_chunk_before_stop:
        async with asyncio.timeout(timeout):
            while "transcript-chunk" not in result.types:
                await asyncio.sleep(0.01)
    result.sent_stop_at = len(result.events)
    await client.write_event(AudioStop().event())
    await asyncio.wait_for(task, timeout)
    return result
