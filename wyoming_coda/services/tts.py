"""Wyoming `tts`: `synthesize` (whole text) and the streaming form (synthesize-start,
synthesize-chunk*, synthesize, synthesize-stop → audio-start/chunk/stop per sentence,
synthesize-stopped). Audio is 24 kHz s16le mono in 80 ms chunks, sent as each frame is decoded.
A new synthesize (or synthesize-start) while audio is still going out cancels it (barge-in)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from ..audio import float_to_s16
from ..engines.tts import UnknownVoiceError
from ..text import split_sentences

if TYPE_CHECKING:
    from ..handler import CodaEventHandler
    from ..manager import VoiceManager

MAX_TEXT_CHARS = 10_000
SAMPLE_RATE = 24000  # Kyutai TTS output (Mimi)
EVENT_TYPES = frozenset(
    e.event().type
    for e in (Synthesize(""), SynthesizeStart(), SynthesizeChunk(""), SynthesizeStop())
)


class TtsService:
    """Speech synthesis for one connection."""

    def __init__(self, handler: CodaEventHandler, manager: VoiceManager) -> None:
        self.handler = handler
        self.manager = manager
        self._task: asyncio.Task[None] | None = None
        self._sentences: asyncio.Queue[str | None] | None = None  # set while streaming
        self._buffer = ""
        self._received = 0

    def accepts(self, event_type: str) -> bool:
        return event_type in EVENT_TYPES

    async def handle(self, event: Event) -> None:
        if Synthesize.is_type(event.type):
            if self._sentences is not None:
                return  # the whole-text copy that streaming clients send for old servers
            synthesize = Synthesize.from_event(event)
            if len(synthesize.text) > MAX_TEXT_CHARS:
                await self.handler.send_error(
                    f"synthesize: text of {len(synthesize.text)} characters exceeds {MAX_TEXT_CHARS}",
                    "text-too-long",
                )
                return
            await self._cancel()
            voice = await self._check_voice(synthesize.voice)
            if voice is not None:
                self._task = asyncio.create_task(self._speak(voice, synthesize.text))
        elif SynthesizeStart.is_type(event.type):
            await self._cancel()
            voice = await self._check_voice(SynthesizeStart.from_event(event).voice)
            if voice is not None:
                self._sentences = asyncio.Queue()
                self._buffer, self._received = "", 0
                self._task = asyncio.create_task(self._speak_stream(voice, self._sentences))
        elif SynthesizeChunk.is_type(event.type):
            await self._stream_text(SynthesizeChunk.from_event(event).text)
        elif SynthesizeStop.is_type(event.type):
            if self._sentences is None:
                await self.handler.send_error("synthesize-stop without synthesize-start", "no-synthesize-start")
                return
            rest, self._buffer = self._buffer.strip(), ""
            if rest:
                self._sentences.put_nowait(rest)
            self._sentences.put_nowait(None)
            self._sentences = None

    async def _check_voice(self, voice: object) -> str | None:
        """The voice to speak with, or None after an `unknown-voice` error."""
        try:
            return await self.manager.check_voice(getattr(voice, "name", None))
        except UnknownVoiceError as err:
            await self.handler.send_error(str(err), "unknown-voice")
            return None

    async def _stream_text(self, text: str) -> None:
        if self._sentences is None:
            await self.handler.send_error("synthesize-chunk without synthesize-start", "no-synthesize-start")
            return
        self._received += len(text)
        if self._received > MAX_TEXT_CHARS:
            await self.handler.send_error(
                f"synthesize-chunk: streamed text exceeds {MAX_TEXT_CHARS} characters", "text-too-long"
            )
            await self._cancel()
            return
        sentences, self._buffer = split_sentences(self._buffer + text)
        for sentence in sentences:
            self._sentences.put_nowait(sentence)

    async def _speak_stream(self, voice: str, sentences: asyncio.Queue[str | None]) -> None:
        while (sentence := await sentences.get()) is not None:
            await self._speak(voice, sentence)
        await self.handler.write_event(SynthesizeStopped().event())

    async def _speak(self, voice: str, text: str) -> None:
        """audio-start, one audio-chunk per decoded frame, audio-stop (also when cancelled)."""
        rate, width, channels = SAMPLE_RATE, 2, 1
        await self.handler.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        sent_ms = 0
        stream = None
        try:
            if text.strip():
                stream = await self.manager.open_synthesis(voice)
                stream.add_text(text)
                stream.end_text()
                async for frame in stream.audio():
                    chunk = AudioChunk(rate=rate, width=width, channels=channels,
                                       audio=float_to_s16(frame), timestamp=sent_ms)
                    await self.handler.write_event(chunk.event())
                    sent_ms += len(frame) * 1000 // rate
        finally:
            if stream is not None:
                await stream.close()
            await self.handler.write_event(AudioStop(timestamp=sent_ms).event())

    async def _cancel(self) -> None:
        """Stop the synthesis in progress (barge-in or a new request)."""
        self._sentences = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        await self._cancel()
