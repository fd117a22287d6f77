"""The voice-stream conductor behind `VoiceManager.process_voice_stream`: listens to a live
audio stream continuously, closes each utterance at the end of speech (VAD or the STT model's
end-of-turn head), answers it while audio keeps coming, and lets speech during an answer
interrupt it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from ..config import AudioConfig
from ..events import EventBus, UserInterrupted
from ..listen.transcription import Transcriber, Transcription, VoiceActivity
from ..metrics import Metrics
from ..turn.conversation import Conversation
from ..turn.events import AudioOut, TextDelta, TurnDone
from ..turn.runner import TurnOptions, TurnRunner
from .formats import VoiceDecoder, VoiceEncoder


@dataclass
class VoiceStreamChunk:
    """One piece of a streamed voice conversation."""

    conversation_id: str
    audio_data: bytes | None = None  # in `audio.format` (s16le PCM at 24 kHz mono by default)
    text_delta: str | None = None
    transcript: str | None = None  # the user's words, once final
    event: str = "response"  # "transcript", "response", "turn_end", "interruption"


class VoiceStreamConductor:
    """Runs `process_voice_stream`: listens continuously, answers each finished utterance."""

    def __init__(
        self, transcriber: Transcriber, turns: TurnRunner, metrics: Metrics, events: EventBus, audio: AudioConfig,
        conversation: Conversation, output: asyncio.Queue[Any],
    ) -> None:
        self.transcriber = transcriber
        self.turns = turns
        self.metrics = metrics
        self.events = events
        self.audio = audio
        self.conversation = conversation
        self.output = output
        self.transcription: Transcription | None = None
        self.reader: asyncio.Task[None] | None = None
        self.completion: asyncio.Task[None] | None = None
        self.answer: asyncio.Task[None] | None = None

    def _chunk(self, **fields: Any) -> VoiceStreamChunk:
        return VoiceStreamChunk(conversation_id=self.conversation.id, **fields)

    def _answering(self) -> bool:
        return self.answer is not None and not self.answer.done()

    async def run(self, audio: AsyncIterable[bytes]) -> None:
        decoder = VoiceDecoder(self.audio)
        try:
            async for data in audio:
                pcm = decoder.push(data)
                if pcm is not None:
                    await self._feed(*pcm)
                await asyncio.sleep(0)  # let the engines step while a fast source floods us
            self._end_utterance()
            if self.completion is not None:
                await asyncio.gather(self.completion, return_exceptions=True)
            if self.answer is not None:  # an interrupted answer ends as cancelled
                await asyncio.gather(self.answer, return_exceptions=True)
        finally:
            await self._close()

    async def _feed(self, pcm: bytes, rate: int, width: int, channels: int) -> None:
        if self.transcription is None:
            self.transcription = await self.transcriber.open(self.conversation.language)
            self.reader = asyncio.create_task(self._read(self.transcription))
        for activity in self.transcription.feed(pcm, rate, width, channels).activity:
            await self._activity(self.transcription, activity)

    async def _read(self, transcription: Transcription) -> None:
        async for result in transcription.results():
            if isinstance(result, VoiceActivity):
                await self._activity(transcription, result)
            elif self._answering() and transcription.user_spoke:  # the user talks over the answer
                await self._interrupt()

    async def _activity(self, transcription: Transcription, activity: VoiceActivity) -> None:
        if activity.started:
            if self._answering():
                await self._interrupt()
        elif transcription is self.transcription and transcription.heard_speech:
            self._end_utterance()

    async def _interrupt(self) -> None:
        assert self.answer is not None
        self.answer.cancel()
        await asyncio.gather(self.answer, return_exceptions=True)
        self.metrics.interruption()
        self.events.publish(UserInterrupted(self.conversation.id))
        await self.output.put(self._chunk(event="interruption"))

    def _end_utterance(self) -> None:
        """Close the current utterance; its transcript is completed (and answered) in a task,
        so this can be called from inside its own reader."""
        transcription, reader = self.transcription, self.reader
        self.transcription = self.reader = None
        if transcription is None or reader is None:
            return
        transcription.finish()
        self.completion = asyncio.create_task(
            self._complete(transcription, reader, time.monotonic(), self.completion)
        )

    async def _complete(
        self, transcription: Transcription, reader: asyncio.Task[None], stop: float,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Finish an utterance (after the one before it, so answers keep their order)."""
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            await reader
        finally:
            await transcription.close()
        if not transcription.text or not transcription.user_spoke:
            return  # nothing said: no answer
        await self.output.put(self._chunk(transcript=transcription.text, event="transcript"))
        if self._answering():
            await self._interrupt()
        self.answer = asyncio.create_task(self._respond(transcription.text, stop))

    async def _respond(self, text: str, end_of_speech: float) -> None:
        encoder: VoiceEncoder | None = None  # made with the first audio
        try:
            async for event in self.turns.answer(self.conversation.id, text, TurnOptions(speak=True)):
                if isinstance(event, TextDelta):
                    await self.output.put(self._chunk(text_delta=event.text))
                elif isinstance(event, AudioOut):
                    if encoder is None:
                        self.metrics.observe("voice_to_voice", time.monotonic() - end_of_speech)
                        encoder = VoiceEncoder(self.audio, event.rate)
                    await self.output.put(self._chunk(audio_data=encoder.chunk(event.pcm)))
                elif isinstance(event, TurnDone):
                    await self.output.put(self._chunk(event="turn_end"))
        except Exception as err:  # noqa: BLE001 - handed to the consumer
            await self.output.put(err)

    async def _close(self) -> None:
        for task in (self.answer, self.completion, self.reader):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.transcription is not None:
            await self.transcription.close()
