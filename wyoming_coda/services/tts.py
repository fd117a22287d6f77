"""Wyoming `tts`: `synthesize` (whole text) and the streaming form (synthesize-start,
synthesize-chunk*, synthesize, synthesize-stop → audio-start/chunk/stop per sentence,
synthesize-stopped). Audio is 24 kHz s16le mono in 80 ms chunks, sent as each frame is decoded.
A new synthesize (or synthesize-start) while audio is still going out cancels it (barge-in)."""

from __future__ import annotations

import asyncio
import logging
import re
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
from ..engines.tts import TextToSpeech, UnknownVoiceError

if TYPE_CHECKING:
    from ..handler import CodaEventHandler
    from ..server import CodaServer

_LOGGER = logging.getLogger(__name__)

MAX_TEXT_CHARS = 10_000
EVENT_TYPES = frozenset(
    e.event().type
    for e in (Synthesize(""), SynthesizeStart(), SynthesizeChunk(""), SynthesizeStop())
)
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n+")


def split_sentences(text: str) -> tuple[list[str], str]:
    """Complete sentences in `text` and the unfinished rest."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        sentence = text[start:match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    return sentences, text[start:]


class TtsService:
    """Speech synthesis for one connection."""

    def __init__(self, handler: CodaEventHandler, server: CodaServer) -> None:
        self.handler = handler
        self.server = server
        self._task: asyncio.Task[None] | None = None
        self._sentences: asyncio.Queue[str | None] | None = None  # set while streaming
        self._buffer = ""
        self._received = 0

    def accepts(self, event_type: str) -> bool:
        return event_type in EVENT_TYPES

    def _voice(self, voice: object) -> str:
        name = getattr(voice, "name", None)
        return name or self.server.config.tts.voice

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
            engine, voice = await self._engine_and_voice(synthesize.voice)
            if engine is not None:
                self._task = asyncio.create_task(self._speak_whole(engine, voice, synthesize.text))
        elif SynthesizeStart.is_type(event.type):
            await self._cancel()
            engine, voice = await self._engine_and_voice(SynthesizeStart.from_event(event).voice)
            if engine is not None:
                self._sentences = asyncio.Queue()
                self._buffer, self._received = "", 0
                self._task = asyncio.create_task(self._speak_stream(engine, voice, self._sentences))
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

    async def _engine_and_voice(self, voice: object) -> tuple[TextToSpeech | None, str]:
        engine: TextToSpeech = await self.server.store.get("tts")
        name = self._voice(voice)
        try:
            await engine.check_voice(name)
        except UnknownVoiceError as err:
            await self.handler.send_error(str(err), "unknown-voice")
            return None, name
        return engine, name

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

    async def _speak_whole(self, engine: TextToSpeech, voice: str, text: str) -> None:
        await self._speak(engine, voice, text)

    async def _speak_stream(self, engine: TextToSpeech, voice: str, sentences: asyncio.Queue[str | None]) -> None:
        while (sentence := await sentences.get()) is not None:
            await self._speak(engine, voice, sentence)
        await self.handler.write_event(SynthesizeStopped().event())

    async def _speak(self, engine: TextToSpeech, voice: str, text: str) -> None:
        """audio-start, one audio-chunk per decoded frame, audio-stop (also when cancelled)."""
        rate, width, channels = engine.sample_rate, 2, 1
        await self.handler.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        stream = await engine.open(voice) if text.strip() else None
        sent_ms = 0
        try:
            if stream is not None:
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
