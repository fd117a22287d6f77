"""Wyoming `tts`: `synthesize` (whole text) and the streaming form (synthesize-start,
synthesize-chunk*, synthesize, synthesize-stop → one audio-start/chunk*/stop block,
synthesize-stopped; the streamed words reach the model as they arrive). Audio is 24 kHz s16le
mono in 80 ms chunks, sent as each frame is decoded. A new synthesize (or synthesize-start)
while audio is still going out cancels it (barge-in)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from ..aio import IdleBound
from ..audio import SAMPLE_RATE, float_to_s16
from ..engines.batching import EngineBusyError
from ..engines.tts import UnknownVoiceError
from ..metrics import Metrics
from ..speak.pipeline import Speaker, SpeakingPipeline
from ..turn.answer_clock import AnswerClock
from ..turn.moshi_turns import RecentAudio
from .connection import Connection

MAX_TEXT_CHARS = 10_000
EVENT_TYPES = frozenset(
    e.event().type
    for e in (Synthesize(""), SynthesizeStart(), SynthesizeChunk(""), SynthesizeStop())
)


class TtsService:
    """Speech synthesis for one connection."""

    def __init__(
        self, connection: Connection, speaker: Speaker, metrics: Metrics, moshi_answers: RecentAudio | None,
        idle_seconds: float = 10.0, clock: AnswerClock | None = None,
    ) -> None:
        """`moshi_answers`: Moshi's recent answers in pipeline turns, spoken in its own voice
        (None: Moshi is not loaded); `idle_seconds`: a streamed synthesis whose text stops
        coming this long ends (its TTS row is given back once the text so far is spoken); `clock`:
        where the first audio of a pipeline turn's answer is noted (voice to voice)."""
        self.clock = clock
        self._requested_at = time.monotonic()  # of the synthesis in progress
        self._whole_text: str | None = None  # its text, when it came whole (else `_streamed`)
        self._text_in = IdleBound(idle_seconds)  # touched by each piece of streamed text
        self._idle: asyncio.Task[None] | None = None
        self.connection = connection
        self.speaker = speaker
        self.metrics = metrics
        self.moshi_answers = moshi_answers
        self._task: asyncio.Task[None] | None = None
        self._stream: SpeakingPipeline | None = None  # set while a streaming synthesis takes text
        self._streamed = ""  # its text so far

    def accepts(self, event_type: str) -> bool:
        return event_type in EVENT_TYPES

    async def handle(self, event: Event) -> None:
        if Synthesize.is_type(event.type):
            if self._stream is not None:
                return  # the whole-text copy that streaming clients send for old servers
            synthesize = Synthesize.from_event(event)
            if len(synthesize.text) > MAX_TEXT_CHARS:
                await self.connection.send_error(
                    f"synthesize: text of {len(synthesize.text)} characters exceeds {MAX_TEXT_CHARS}",
                    "text-too-long",
                )
                return
            await self._cancel()
            self._requested_at, self._whole_text = time.monotonic(), synthesize.text
            moshi = self._moshi_answer(synthesize.text)
            if moshi is not None:
                self._task = asyncio.create_task(self._play(moshi, streaming=False))
            elif (voice := await self._check_voice(synthesize.voice)) != "":
                self._task = asyncio.create_task(self._speak_whole(voice, synthesize.text))
        elif SynthesizeStart.is_type(event.type):
            await self._cancel()
            self._requested_at, self._whole_text = time.monotonic(), None
            if (voice := await self._check_voice(SynthesizeStart.from_event(event).voice)) != "":
                self._stream, self._streamed = self.speaker.speech(voice), ""
                # the text may be one of Moshi's answers: speak nothing until it cannot be
                self._stream.hold = self._may_be_moshi_answer("")
                self._task = asyncio.create_task(self._speak_stream(self._stream))
                self._text_in.touch()
                self._idle = asyncio.create_task(self._end_when_idle(self._stream), name="tts idle bound")
        elif SynthesizeChunk.is_type(event.type):
            await self._stream_text(SynthesizeChunk.from_event(event).text)
        elif SynthesizeStop.is_type(event.type):
            if self._stream is None:
                await self.connection.send_error("synthesize-stop without synthesize-start", "no-synthesize-start")
                return
            moshi = self._moshi_answer(self._streamed) if self._stream.hold else None
            if moshi is not None:  # Moshi's answer: its own voice instead of TTS
                await self._cancel()
                self._task = asyncio.create_task(self._play(moshi, streaming=True))
                return
            self._stream.end()
            self._stream = None

    def _moshi_answer(self, text: str) -> list[np.ndarray] | None:
        """Moshi's own audio of an answer it gave in a pipeline turn, if `text` is that answer."""
        return self.moshi_answers.get(text) if self.moshi_answers is not None else None

    def _may_be_moshi_answer(self, text: str) -> bool:
        """Whether `text` (still streaming in) may become one of Moshi's recent answers."""
        return self.moshi_answers is not None and self.moshi_answers.may_become(text)

    async def _check_voice(self, voice: object) -> str | None:
        """The voice asked for; None when none was (the text's language decides); "" after an
        `unknown-voice` error."""
        name = getattr(voice, "name", None)
        if not name:
            return None
        try:
            return await self.speaker.check_voice(name)
        except UnknownVoiceError as err:
            await self.connection.send_error(str(err), "unknown-voice")
            return ""

    async def _stream_text(self, text: str) -> None:
        if self._stream is None:
            await self.connection.send_error("synthesize-chunk without synthesize-start", "no-synthesize-start")
            return
        self._streamed += text
        self._text_in.touch()
        if len(self._streamed) > MAX_TEXT_CHARS:
            await self.connection.send_error(
                f"synthesize-chunk: streamed text exceeds {MAX_TEXT_CHARS} characters", "text-too-long"
            )
            await self._cancel()
            return
        self._stream.push(text)
        if self._stream.hold and not self._may_be_moshi_answer(self._streamed):
            self._stream.hold = False
            self._stream.release()

    async def _speak_stream(self, speech: SpeakingPipeline) -> None:
        """The streamed text as one audio block, opened with its first frame (a stream that
        turns out to be one of Moshi's answers speaks none), then synthesize-stopped. The row
        is taken at once: the first words are spoken as they come."""
        try:
            await speech.start()
            await self._block(speech.frames(), open_on_first_frame=True)
        except EngineBusyError as err:
            await self.connection.send_error(f"synthesize-start: {err}", "busy")
            return
        finally:
            await speech.close()
        await self._write(SynthesizeStopped().event())

    async def _end_when_idle(self, speech: SpeakingPipeline) -> None:
        """A streamed synthesis whose text stops coming ends after `idle_seconds`."""
        await self._text_in.expired()
        if self._stream is speech:
            self._stream = None
            speech.end()
            await self.connection.send_error(f"no text for {self._text_in.seconds:g} s: the synthesis ended",
                                             "stream-idle")

    async def _block(self, frames: AsyncGenerator[np.ndarray, None], open_on_first_frame: bool = False) -> None:
        """audio-start, one audio-chunk per frame as it comes, audio-stop (also when cancelled)."""
        started, sent_ms = False, 0
        if not open_on_first_frame:
            await self._write(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
            started = True
        try:
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    if not started:
                        await self._write(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
                        started = True
                    if not sent_ms:
                        self._first_audio()
                    sent_ms = await self._send_frame(frame, sent_ms)
        finally:
            if started:
                await self._write(AudioStop(timestamp=sent_ms).event())

    def _first_audio(self) -> None:
        """The synthesis' first audio goes out: TTS first audio (from the request), and voice to
        voice when it speaks a pipeline turn's answer."""
        self.metrics.observe("tts_first_audio", time.monotonic() - self._requested_at)
        if self.clock is not None:
            self.clock.first_audio(self._whole_text if self._whole_text is not None else self._streamed)

    async def _speak_whole(self, voice: str | None, text: str) -> None:
        """One audio block, closed whatever happens (a client may read until `audio-stop`); when
        no TTS row frees in time, the block is empty and a `busy` error follows it."""
        try:
            await self._block(self.speaker.speech(voice).say(text))
        except EngineBusyError as err:
            await self.connection.send_error(f"synthesize: {err}", "busy")

    async def _play(self, frames: list[np.ndarray], streaming: bool) -> None:
        """One of Moshi's answers, in its own voice, as one audio block."""
        self.metrics.moshi_spoken_answer()

        async def replay() -> AsyncGenerator[np.ndarray, None]:
            for frame in frames:
                yield frame

        await self._block(replay())
        if streaming:
            await self._write(SynthesizeStopped().event())

    async def _send_frame(self, frame: np.ndarray, sent_ms: int) -> int:
        """Send one frame as an audio-chunk; returns the audio time sent after it."""
        chunk = AudioChunk(rate=SAMPLE_RATE, width=2, channels=1, audio=float_to_s16(frame), timestamp=sent_ms)
        await self._write(chunk.event())
        return sent_ms + len(frame) * 1000 // SAMPLE_RATE

    async def _write(self, event: Event) -> None:
        await self.connection.write_event(event)

    async def _cancel(self) -> None:
        """Stop the synthesis in progress (barge-in or a new request)."""
        self._stream = None
        for task in (self._idle, self._task):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._idle = self._task = None

    async def close(self) -> None:
        await self._cancel()
