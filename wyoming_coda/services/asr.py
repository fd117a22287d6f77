"""Wyoming `asr`: audio-start / audio-chunk* / audio-stop → transcript-start, transcript-chunk*
while the user speaks, transcript, transcript-stop; voice-started / voice-stopped from Silero
VAD and the STT model's end-of-turn head."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

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

from ..audio import AudioFormatError, StreamConverter, check_format
from ..engines.stt import SttStream
from ..vad import VAD_RATE, SileroVad

if TYPE_CHECKING:
    from ..handler import CodaEventHandler
    from ..server import CodaServer

_LOGGER = logging.getLogger(__name__)

END_OF_TURN_THRESHOLD = 0.6  # moving average of the end-of-turn head, as Kyutai's Unmute
END_OF_TURN_WINDOW = 4  # frames (320 ms)
EVENT_TYPES = frozenset(
    e.event().type for e in (Transcribe(), AudioStart(0, 0, 0), AudioChunk(0, 0, 0, b""), AudioStop())
)


class Utterance:
    """One audio-start … audio-stop: the STT stream, the VAD and the transcript so far."""

    def __init__(self, stream: SttStream, vad: SileroVad | None, language: str | None) -> None:
        self.stream = stream
        self.vad = vad
        self.language = language
        self.stt_audio = StreamConverter(stream.engine.sample_rate)
        self.vad_audio = StreamConverter(VAD_RATE)
        self.text: list[str] = []
        self.end_of_speech = asyncio.Event()  # for the conversation pipeline
        self.heard_speech = False
        self._end_scores: deque[float] = deque(maxlen=END_OF_TURN_WINDOW)
        self.reader: asyncio.Task[None] | None = None

    def trailing_silence(self) -> float:
        """Seconds of non-speech at the end of the audio so far (0 without VAD)."""
        return self.vad.silence_run_ms / 1000 if self.vad is not None else 0.0

    def end_of_turn(self, score: float | None) -> bool:
        """Feed one end-of-turn score; True when its moving average crosses the threshold."""
        if score is None or not self.heard_speech:
            return False
        self._end_scores.append(score)
        return (
            len(self._end_scores) == END_OF_TURN_WINDOW
            and sum(self._end_scores) / END_OF_TURN_WINDOW > END_OF_TURN_THRESHOLD
        )


class AsrService:
    """Streaming transcription for one connection."""

    def __init__(self, handler: CodaEventHandler, server: CodaServer) -> None:
        self.handler = handler
        self.server = server
        self._language: str | None = None
        self._utterance: Utterance | None = None

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
        try:
            check_format(start.rate, start.width, start.channels)
        except AudioFormatError as err:
            await self.handler.send_error(f"audio-start: {err}", "unsupported-audio")
            return
        engine = await self.server.store.get("stt")
        stream = await engine.open()
        audio = self.server.config.audio
        vad = SileroVad(audio.vad_threshold, audio.silence_duration_ms) if audio.vad_enabled else None
        language = self._language or self.server.store.slots["stt"].languages[0]
        self._utterance = utterance = Utterance(stream, vad, language)
        await self.handler.write_event(TranscriptStart(language=language).event())
        utterance.reader = asyncio.create_task(self._read(utterance), name="asr reader")

    async def _chunk(self, chunk: AudioChunk) -> None:
        utterance = self._utterance
        if utterance is None:
            await self.handler.send_error("audio-chunk without audio-start", "no-audio-start")
            return
        try:
            samples = utterance.stt_audio.convert(chunk.audio, chunk.rate, chunk.width, chunk.channels)
            vad_samples = utterance.vad_audio.convert(chunk.audio, chunk.rate, chunk.width, chunk.channels)
        except AudioFormatError as err:
            await self.handler.send_error(f"audio-chunk: {err}", "unsupported-audio")
            return
        utterance.stream.feed(samples)
        if utterance.vad is not None:
            for vad_event in utterance.vad.process(vad_samples):
                await self._voice_event(utterance, vad_event.kind, vad_event.ms)

    async def _voice_event(self, utterance: Utterance, kind: str, ms: int) -> None:
        if kind == "started":
            utterance.heard_speech = True
            utterance.end_of_speech.clear()
            await self.handler.write_event(VoiceStarted(timestamp=ms).event())
        elif not utterance.end_of_speech.is_set():
            utterance.end_of_speech.set()
            await self.handler.write_event(VoiceStopped(timestamp=ms).event())

    async def _read(self, utterance: Utterance) -> None:
        """Send transcript chunks as the model produces text."""
        frame_ms = 1000 / utterance.stream.engine.frame_rate
        async for output in utterance.stream.outputs():
            if output.text:
                utterance.text.append(output.text)
                await self.handler.write_event(TranscriptChunk(text=output.text).event())
            if utterance.end_of_turn(output.end_of_turn):
                await self._voice_event(utterance, "stopped", int(utterance.stream.frames_in * frame_ms))

    async def _stop(self) -> None:
        utterance = self._utterance
        if utterance is None:
            await self.handler.send_error("audio-stop without audio-start", "no-audio-start")
            return
        utterance.stream.feed(utterance.stt_audio.flush())
        utterance.stream.finish(utterance.trailing_silence())
        assert utterance.reader is not None
        try:
            await utterance.reader
        finally:
            await self.close()
        text = "".join(utterance.text).strip()
        await self.handler.write_event(Transcript(text=text, language=utterance.language).event())
        await self.handler.write_event(TranscriptStop().event())

    async def close(self) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is None:
            return
        if utterance.reader is not None and not utterance.reader.done():
            utterance.reader.cancel()
            await asyncio.gather(utterance.reader, return_exceptions=True)
        await utterance.stream.close()
