"""Wyoming `asr`: audio-start / audio-chunk* / audio-stop → transcript-start, transcript-chunk*
while the user speaks, transcript, transcript-stop; voice-started / voice-stopped from Silero
VAD and the STT model's end-of-turn head.

With `stt.end_of_turn` (the default) the server ends the command itself: when the model's
head (or, without one, the VAD's silence) says the user is done, or a bound is reached, it
flushes the model's text delay at once and sends the final transcript while the audio still
streams; the rest of that audio, and a late audio-stop, are dropped. A client that sends
audio-stop first gets its transcript then, as without the option."""

from __future__ import annotations

import asyncio
import time

from wyoming.asr import (
    Transcribe,
    Transcript,
    TranscriptChunk,
    TranscriptStart,
    TranscriptStop,
)
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.vad import VoiceStarted, VoiceStopped

from ..aio import IdleBound
from ..audio import AudioFormatError, check_format
from ..engines.batching import EngineBusyError
from ..events import EventBus, TranscriptEvent
from ..listen.transcription import TextPiece, Transcriber, Transcription, VoiceActivity
from ..metrics import Metrics
from ..turn.answer_clock import AnswerClock
from .connection import Connection

EVENT_TYPES = frozenset(
    e.event().type for e in (Transcribe(), AudioStart(0, 0, 0), AudioChunk(0, 0, 0, b""), AudioStop())
)


class AsrService:
    """Streaming transcription for one connection."""

    def __init__(
        self, connection: Connection, transcriber: Transcriber, metrics: Metrics, events: EventBus,
        ends_commands: bool, idle_seconds: float = 10.0, clock: AnswerClock | None = None,
    ) -> None:
        """`ends_commands`: the server ends a command itself (`stt.end_of_turn`); `idle_seconds`:
        a command whose audio stops coming this long ends, giving its STT row back; `clock`: where
        the end of each command is noted (voice to voice of its answer)."""
        self.clock = clock
        self.connection = connection
        self.transcriber = transcriber
        self.metrics = metrics
        self.events = events
        self.ends_commands = ends_commands
        self._language: str | None = None
        self._transcription: Transcription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ending: asyncio.Task[None] | None = None
        self._ended = False  # the server ended this command: the client may still be streaming
        self._heard = IdleBound(idle_seconds)  # touched by each chunk of audio
        self._idle: asyncio.Task[None] | None = None

    def accepts(self, event_type: str) -> bool:
        return event_type in EVENT_TYPES

    async def handle(self, event: Event) -> None:
        if Transcribe.is_type(event.type):
            self._language = Transcribe.from_event(event).language
        elif AudioStart.is_type(event.type):
            await self._start(AudioStart.from_event(event))
        elif AudioChunk.is_type(event.type):
            await self._chunk(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._stop()

    async def _start(self, start: AudioStart) -> None:
        await self.close()  # a new audio-start ends the previous utterance
        self._ended = False
        try:
            check_format(start.rate, start.width, start.channels)
        except AudioFormatError as err:
            await self.connection.send_error(f"audio-start: {err}", "unsupported-audio")
            return
        try:
            self._transcription = transcription = await self.transcriber.open(self._language)
        except EngineBusyError as err:
            self._ended = True  # the rest of this command's audio is dropped
            await self.connection.send_error(f"audio-start: {err}", "busy")
            return
        self._heard.touch()
        await self.connection.write_event(TranscriptStart(language=transcription.language).event())
        self._reader = asyncio.create_task(self._read(transcription), name="asr reader")
        self._idle = asyncio.create_task(self._end_when_idle(transcription), name="asr idle bound")

    async def _end_when_idle(self, transcription: Transcription) -> None:
        """A client that stops sending audio gives its row back after `idle_seconds`."""
        await self._heard.expired()
        if self._transcription is transcription and not self._ended:
            self._ended = True
            await self.close()
            await self.connection.send_error(f"no audio for {self._heard.seconds:g} s: the command ended",
                                             "stream-idle")

    async def _chunk(self, chunk: AudioChunk) -> None:
        if self._ended:
            return  # the command is over; the client streams until it reads the transcript
        if self._transcription is None:
            await self.connection.send_error("audio-chunk without audio-start", "no-audio-start")
            return
        self._heard.touch()
        try:
            heard = self._transcription.feed(chunk.audio, chunk.rate, chunk.width, chunk.channels)
        except AudioFormatError as err:
            await self.connection.send_error(f"audio-chunk: {err}", "unsupported-audio")
            return
        for activity in heard.activity:
            await self._voice_event(activity)
        self._check_end(self._transcription)

    def _check_end(self, transcription: Transcription) -> None:
        """End the command here when the server owns its end and it is over."""
        if self._ended or not self.ends_commands:
            return
        reason = transcription.turn_over()
        if reason is not None:
            self._ended = True
            self.metrics.end_of_turn(reason)
            self._ending = asyncio.create_task(self._finish(reason), name="asr end of turn")

    async def _voice_event(self, activity: VoiceActivity) -> None:
        if activity.started:
            await self.connection.write_event(VoiceStarted(timestamp=activity.ms).event())
        else:
            await self.connection.write_event(VoiceStopped(timestamp=activity.ms).event())

    async def _read(self, transcription: Transcription) -> None:
        """Send transcript chunks (and end-of-turn) as the model produces them."""
        async for result in transcription.results():
            if isinstance(result, TextPiece):
                self.events.publish(TranscriptEvent("user", result.text, False))
                await self.connection.write_event(TranscriptChunk(text=result.text).event())
            else:
                await self._voice_event(result)
            self._check_end(transcription)

    async def _stop(self) -> None:
        if self._ended:
            return  # the server ended this command already
        await self._finish()

    async def _finish(self, reason: str | None = None) -> None:
        """The final transcript: flush the model's delay (faster than real time), then send it
        (empty when the command ended without speech: words the model wrote then are noise)."""
        self._ended = True
        ended_at = time.monotonic()
        transcription, reader = self._transcription, self._reader
        if transcription is None or reader is None:
            await self.connection.send_error("audio-stop without audio-start", "no-audio-start")
            return
        transcription.finish()
        try:
            await reader
        finally:
            await self.close()
        text = "" if reason == "no-speech" else transcription.text
        if self.clock is not None:
            self.clock.command_ended(text, ended_at)
        await self.connection.write_event(Transcript(text=text, language=transcription.language).event())
        await self.connection.write_event(TranscriptStop().event())

    async def close(self) -> None:
        transcription, reader, ending, idle = self._transcription, self._reader, self._ending, self._idle
        self._transcription = self._reader = self._ending = self._idle = None
        for task in (ending, idle):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if reader is not None and not reader.done():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if transcription is not None:
            await transcription.close()
