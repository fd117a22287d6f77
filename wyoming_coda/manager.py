"""`VoiceManager`: the spec's Python API and the one door to the voice system.

The Wyoming services and the HTTP side call this, nothing below it: transcription and
synthesis streams, conversation turns (hybrid processor, tools, memory, personality, modes),
whole voice turns from WAV or from an audio stream, analytics and events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .aio import task_stream
from .audio import float_to_s16
from .config import VoiceConfig
from .conversation import Conversation, Route, route_turn, system_prompt
from .engines.moshi import MoshiSession
from .engines.tts import TtsStream
from .enhance import Enhancer
from .events import EventBus
from .hybrid import (
    AudioOut,
    TextDelta,
    ToolAnswered,
    ToolCalled,
    TurnDone,
    TurnEvent,
    TurnRequest,
    run_turn,
)
from .llm import LLMBackend, create_backend
from .llm.base import LLMError
from .memory import Memory, MemoryStore
from .metrics import Analytics, Metrics
from .models import ModelStore
from .personality import Personality, PersonalityStore
from .speech import (
    Transcription,
    VoiceActivity,
    WavStreamReader,
    read_wav_bytes,
    wav_bytes,
)
from .tools import LocalTools, Toolbox, ToolManager
from .vad import SileroVad

_LOGGER = logging.getLogger(__name__)

LLM_DOWN_SECONDS = 30.0  # adaptive mode routes around an LLM that failed this recently
LLM_CHECK_SECONDS = 15.0  # analytics ask the LLM server whether it answers at most this often


class ModeNotAvailableError(Exception):
    """The configured mode cannot answer in this version."""


class MemoryManager(Protocol):
    """What `set_memory_manager` takes (MemoryStore is the built-in one)."""

    async def add_turn(self, user_id: str, conversation_id: str, user_text: str, answer: str) -> list[str]: ...
    async def relevant(self, user_id: str, query: str, limit: int) -> list[Memory]: ...


class PersonalityManager(Protocol):
    """What `set_personality_manager` takes (PersonalityStore is the built-in one)."""

    def get(self, user_id: str) -> Personality: ...
    def adapt(self, user_id: str, feedback: str) -> Personality | None: ...


@dataclass
class VoiceResponse:
    """The answer to one voice turn."""

    conversation_id: str
    transcript: str
    text_content: str
    audio_data: bytes  # WAV, 24 kHz 16-bit mono
    route: str
    latency_ms: dict[str, float] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class VoiceStreamChunk:
    """One piece of a streamed voice conversation."""

    conversation_id: str
    audio_data: bytes | None = None  # PCM 24 kHz 16-bit mono
    text_delta: str | None = None
    transcript: str | None = None  # the user's words, once final
    event: str = "response"  # "transcript", "response", "turn_end", "interruption"


class VoiceManager:
    """Owns models, LLM, memory, personality, tools and conversations of one process."""

    def __init__(self, config: VoiceConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store = ModelStore(config, on_step=self.metrics.engine_step)
        self.events = EventBus()
        self.conversations: dict[str, Conversation] = {}
        self.llm: LLMBackend = create_backend(config.external_llm)
        data_dir = Path(config.server.data_dir)
        self.memory: MemoryManager | None = (
            MemoryStore(data_dir / "memory.db") if config.integration.memory_enabled else None
        )
        default = Personality(
            name=config.personality.name, style=config.personality.style,
            verbosity=config.personality.verbosity, tone=config.personality.tone,
        )
        self.personality: PersonalityManager = PersonalityStore(data_dir / "personality.json", default)
        self.local_tools = LocalTools(on_timer=self._timer_done)
        self.tools: ToolManager | None = self.local_tools if config.integration.tools_enabled else None
        self._llm_failed_at = float("-inf")
        self._llm_reachable: bool | None = None
        self._llm_checked_at = float("-inf")
        self._llm_check: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def initialize(self, wait: bool = True) -> None:
        """Start loading the models (and wait for them unless `wait` is False)."""
        self.store.start()
        if wait:
            for kind in self.store.slots:
                await self.store.get(kind)

    async def close(self) -> None:
        if self._llm_check is not None:
            self._llm_check.cancel()
            await asyncio.gather(self._llm_check, return_exceptions=True)
        await self.local_tools.close()
        await self.llm.close()
        if isinstance(self.memory, MemoryStore):
            await self.memory.close()
        await self.store.close()

    async def set_memory_manager(self, memory_manager: MemoryManager | None) -> None:
        self.memory = memory_manager

    async def set_personality_manager(self, personality_manager: PersonalityManager) -> None:
        self.personality = personality_manager

    async def set_tool_manager(self, tool_manager: ToolManager | None) -> None:
        self.tools = tool_manager

    # -- conversations --------------------------------------------------------------------------
    async def start_conversation(
        self, conversation_id: str | None = None, user_id: str = "default", language: str | None = None,
        idle_timeout: float | None = None,
    ) -> str:
        """Open (or continue) a conversation; with `idle_timeout` it ends by itself after that
        many seconds without a turn (clients that never say goodbye, like Home Assistant)."""
        await self._end_idle()
        conversation_id = conversation_id or uuid.uuid4().hex
        if conversation_id not in self.conversations:
            self.conversations[conversation_id] = Conversation(conversation_id, user_id, language,
                                                               idle_timeout=idle_timeout)
            self.metrics.conversation_started()
            self.events.publish("conversation_start", conversation_id=conversation_id, user_id=user_id)
        return conversation_id

    async def end_conversation(self, conversation_id: str) -> None:
        if self.conversations.pop(conversation_id, None) is not None:
            self.metrics.conversation_ended()
            self.events.publish("conversation_end", conversation_id=conversation_id)

    async def _end_idle(self) -> None:
        now = time.monotonic()
        for conversation in [c for c in self.conversations.values() if c.idle(now)]:
            await self.end_conversation(conversation.id)

    def _conversation(self, conversation_id: str) -> Conversation:
        try:
            return self.conversations[conversation_id]
        except KeyError:
            raise KeyError(f"unknown conversation {conversation_id!r}; call start_conversation() first") from None

    # -- speech ---------------------------------------------------------------------------------
    def enhancer(self, echo: bool = False) -> Enhancer:
        """The input enhancement stages the `audio` config enables (echo cancellation only for
        paths that know what the server played)."""
        audio = self.config.audio
        return Enhancer(echo and audio.echo_cancellation, audio.noise_reduction, audio.auto_gain_control)

    async def open_transcription(
        self, language: str | None = None, vad: bool = True, enhance: bool = True
    ) -> Transcription:
        """A streaming transcription: an STT row, input enhancement (unless `enhance` is False:
        the caller already enhanced), and unless `vad` is False, VAD and end of turn."""
        engine = await self.store.get("stt")
        stream = await engine.open()
        audio = self.config.audio
        detector = SileroVad(audio.vad_threshold, audio.silence_duration_ms) if audio.vad_enabled and vad else None
        return Transcription(stream, detector, language or self.store.slots["stt"].languages[0],
                             self.enhancer() if enhance else None)

    def record_transcription(self, transcription: Transcription, seconds_after_stop: float) -> None:
        """Account a finished transcription (latency, audio quality, event)."""
        self.metrics.observe("stt_final", seconds_after_stop)
        if transcription.end_of_speech_delay is not None:
            self.metrics.observe("vad_end_of_speech", transcription.end_of_speech_delay)
        quality = transcription.quality()
        if quality is not None:
            self.metrics.audio_quality({k: v for k, v in vars(quality).items() if v is not None})
        self.events.publish("transcript", speaker="user", text=transcription.text, final=True,
                            language=transcription.language)

    async def check_voice(self, voice: str | None) -> str:
        """The voice to use (the default for None); raises UnknownVoiceError."""
        name = voice or self.config.tts.voice
        await (await self.store.get("tts")).check_voice(name)
        return name

    async def open_synthesis(self, voice: str | None = None) -> TtsStream:
        """A streaming synthesis: add text, end it, read 80 ms frames."""
        engine = await self.store.get("tts")
        return await engine.open(voice or self.config.tts.voice)

    async def open_duplex(self) -> MoshiSession:
        """A full-duplex Moshi session (user frames in, Moshi's frames and text out)."""
        engine = await self.store.get("moshi")
        return await engine.open()

    # -- turns ----------------------------------------------------------------------------------
    def _route(self, text: str) -> Route:
        mode = self.config.mode
        if mode == "moshi_only":
            raise ModeNotAvailableError(
                "moshi_only mode needs Moshi full-duplex answering, which this version does not "
                "provide yet; use hybrid or adaptive"
            )
        if mode == "hybrid":
            return Route("llm", "hybrid mode")
        llm_healthy = time.monotonic() - self._llm_failed_at > LLM_DOWN_SECONDS
        speech = self.store.slots["tts"].model
        saturated = speech is not None and speech.scheduler.active >= speech.capacity
        return route_turn(text, llm_healthy, saturated)

    async def process_text(
        self,
        conversation_id: str,
        text: str,
        *,
        tools: ToolManager | None = None,
        extra_prompt: str | None = None,
        language: str | None = None,
        speak: bool = False,
        voice: str | None = None,
        memory: bool = True,
        personality: Mapping[str, str] | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """One turn from the user's text: text deltas, tool calls, audio frames (when `speak`),
        then TurnDone. `memory=False` neither recalls nor learns; `personality` overrides fields
        of the user's profile (verbosity, tone) for this turn. Closing the iterator cancels the
        turn (barge-in)."""
        conversation = self._conversation(conversation_id)
        conversation.last_active = time.monotonic()
        if personality:
            Personality().overridden(personality)  # refuse bad fields before anything runs
        if language:
            conversation.language = language
        route = self._route(text)
        self.metrics.route(route.name)
        self.events.publish("route", conversation_id=conversation_id, route=route.name, reason=route.reason)
        integration = self.config.integration
        adapts = integration.personality_enabled and integration.personality_adaptation
        adapted = self.personality.adapt(conversation.user_id, text) if adapts else None
        if adapted is not None:
            self.events.publish("personality", conversation_id=conversation_id, verbosity=adapted.verbosity,
                                tone=adapted.tone)
        if route.name == "fallback":
            events = self._fallback_turn(route, speak, voice)
        else:
            request = await self._turn_request(conversation, text, route, tools, extra_prompt, speak, voice,
                                               memory, personality)
            events = run_turn(self.llm, request)
        start = time.monotonic()
        async with contextlib.aclosing(events):  # closing this iterator cancels the turn at once
            async for event in events:
                if isinstance(event, ToolCalled):
                    self.events.publish("tool_call", conversation_id=conversation_id, name=event.call.name,
                                        arguments=event.call.arguments)
                elif isinstance(event, ToolAnswered):
                    self.metrics.tool_call(ok=event.error is None)
                elif isinstance(event, TurnDone):
                    await self._finish_turn(conversation, text, event, time.monotonic() - start, memory)
                yield event

    async def _turn_request(
        self, conversation: Conversation, text: str, route: Route, tools: ToolManager | None,
        extra_prompt: str | None, speak: bool, voice: str | None, memory: bool,
        personality: Mapping[str, str] | None,
    ) -> TurnRequest:
        full = route.name == "llm"
        memories: list[Memory] = []
        if full and memory and self.memory is not None:
            memories = await self.memory.relevant(conversation.user_id, text,
                                                  self.config.integration.memory_context_limit)
        managers = [m for m in (tools, self.tools) if m is not None] if full else []
        personal = self.config.integration.personality_enabled
        profile = self.personality.get(conversation.user_id if personal else "default")
        prompt = system_prompt(
            profile.overridden(personality) if personality else profile,
            [self.config.personality.extra_prompt, extra_prompt or ""],
            conversation.language, memories,
        )
        return TurnRequest(
            messages=conversation.messages(prompt, text),
            toolbox=Toolbox(managers) if managers else None,
            route=route.name,
            max_tool_iterations=self.config.external_llm.max_tool_iterations,
            open_tts=(lambda: self.open_synthesis(voice)) if speak else None,
        )

    async def _fallback_turn(self, route: Route, speak: bool, voice: str | None) -> AsyncIterator[TurnEvent]:
        spoken = "Sorry, I can't reach my language model right now."
        yield TextDelta(spoken)
        if speak:
            tts = await self.open_synthesis(voice)
            try:
                tts.add_text(spoken)
                tts.end_text()
                async for frame in tts.audio():
                    yield AudioOut(frame)
            finally:
                await tts.close()
        yield TurnDone(spoken, route.name, "llm-unavailable")

    async def _finish_turn(
        self, conversation: Conversation, text: str, done: TurnDone, seconds: float, memory: bool
    ) -> None:
        conversation.last_active = time.monotonic()
        self.metrics.turn()
        for stage, value in done.timings.items():
            self.metrics.observe("turn_done" if stage == "done" else stage, value)
        if done.error:
            self.metrics.error(done.error)
            self.events.publish("error", conversation_id=conversation.id, code=done.error, text=done.text)
            if done.error in ("llm-unavailable", "llm-model-missing") and done.route != "fallback":
                self._llm_failed_at = time.monotonic()
        else:
            conversation.add_turn(text, done.text)
            if memory and self.memory is not None:
                learned = await self.memory.add_turn(conversation.user_id, conversation.id, text, done.text)
                if learned:
                    self.events.publish("memory", conversation_id=conversation.id, learned=learned)
        self.events.publish("response_generated", conversation_id=conversation.id, text=done.text,
                            route=done.route, latency_ms={k: v * 1000 for k, v in done.timings.items()},
                            seconds=seconds)

    async def _timer_done(self, name: str) -> None:
        self.events.publish("timer", name=name)

    # -- whole voice turns ----------------------------------------------------------------------
    async def _transcribe_all(
        self, pcm: bytes, rate: int, width: int, channels: int, language: str | None
    ) -> tuple[str, float]:
        """(transcript, seconds from the end of the audio to the final transcript)."""
        transcription = await self.open_transcription(language)
        try:
            transcription.feed(pcm, rate, width, channels)
            stop = time.monotonic()
            transcription.finish()
            async for _ in transcription.results():
                pass
            seconds = time.monotonic() - stop
            self.record_transcription(transcription, seconds)
            return transcription.text, seconds
        finally:
            await transcription.close()

    async def process_voice_input(self, conversation_id: str, audio_data: bytes) -> VoiceResponse:
        """A WAV file of the user speaking → the transcript, the answer text and its audio (WAV)."""
        conversation = self._conversation(conversation_id)
        pcm, rate, width, channels = read_wav_bytes(audio_data)
        transcript, stt_seconds = await self._transcribe_all(pcm, rate, width, channels, conversation.language)
        frames: list[np.ndarray] = []
        calls: list[dict[str, Any]] = []
        done = TurnDone("", "none")
        if transcript:
            async for event in self.process_text(conversation_id, transcript, speak=True):
                if isinstance(event, AudioOut):
                    frames.append(event.pcm)
                elif isinstance(event, ToolAnswered):
                    calls.append({"name": event.call.name, "arguments": event.call.arguments,
                                  "result": event.result, "error": event.error})
                elif isinstance(event, TurnDone):
                    done = event
        if "tts_first_audio" in done.timings:
            self.metrics.observe("voice_to_voice", stt_seconds + done.timings["tts_first_audio"])
        engine_rate = (await self.store.get("tts")).sample_rate
        audio = float_to_s16(np.concatenate(frames)) if frames else b""
        latency = {"stt": stt_seconds * 1000, **{k: v * 1000 for k, v in done.timings.items()}}
        return VoiceResponse(conversation_id, transcript, done.text, wav_bytes(audio, engine_rate), done.route,
                             latency, calls, done.error)

    async def process_voice_stream(
        self, conversation_id: str, audio: AsyncIterable[bytes]
    ) -> AsyncIterator[VoiceStreamChunk]:
        """A live audio stream (a WAV header, then PCM) → transcripts and spoken answers.

        Each end of speech (VAD or the STT end-of-turn head) closes the user's turn and starts
        the answer while audio keeps coming; speech during an answer interrupts it.
        """
        conversation = self._conversation(conversation_id)

        async def conduct(output: asyncio.Queue[Any]) -> None:
            await _StreamConductor(self, conversation, output).run(audio)

        async with contextlib.aclosing(task_stream(conduct, "coda voice stream")) as chunks:
            async for chunk in chunks:
                yield chunk

    # -- analytics ------------------------------------------------------------------------------
    def refresh_metrics(self) -> None:
        """Update the gauges that are read, not counted (engine occupancy, memory)."""
        engines = {k: slot.model for k, slot in self.store.slots.items() if hasattr(slot.model, "scheduler")}
        self.metrics.engines(
            {k: e.scheduler.active / e.capacity for k, e in engines.items()},
            {k: e.scheduler.waiting for k, e in engines.items()},
        )
        self.metrics.memory(self.store.memory_report())

    async def _check_llm(self) -> None:
        try:
            await asyncio.wait_for(self.llm.check(), LLM_CHECK_SECONDS)
            self._llm_reachable = True
        except (LLMError, TimeoutError) as err:
            _LOGGER.debug("LLM check failed: %s", err)
            self._llm_reachable = False

    def _llm_status(self) -> bool | None:
        """Whether the LLM server answered its last check (None before the first one), and
        start a new check in the background when that one is old."""
        now = time.monotonic()
        if now - self._llm_checked_at > LLM_CHECK_SECONDS and (self._llm_check is None or self._llm_check.done()):
            self._llm_checked_at = now
            self._llm_check = asyncio.create_task(self._check_llm(), name="llm check")
        return self._llm_reachable

    async def get_analytics(self) -> Analytics:
        await self._end_idle()
        self.refresh_metrics()
        latency = self.metrics.latency_ms()
        headline = latency.get("voice_to_voice") or latency.get("tts_first_audio") or latency.get("llm_first_sentence")
        return Analytics(
            total_conversations=self.metrics.conversations,
            active_conversations=len(self.conversations),
            total_turns=self.metrics.turns,
            average_latency_ms=headline["mean"] if headline else None,
            latency_ms=latency,
            routes=dict(self.metrics.routes),
            tool_calls=dict(self.metrics.tool_calls),
            errors=dict(self.metrics.errors),
            interruptions=self.metrics.interruptions,
            connections=self.metrics.connections,
            vram_usage=self.store.memory_report(),
            audio_quality=self.metrics.quality(),
            models={kind: slot.state for kind, slot in self.store.slots.items()},
            mode=self.config.mode,
            llm={"provider": self.llm.name, "model": self.llm.model,
                 "healthy": time.monotonic() - self._llm_failed_at > LLM_DOWN_SECONDS,
                 "reachable": self._llm_status()},
        )


class _StreamConductor:
    """Runs `process_voice_stream`: listens continuously, answers each finished utterance."""

    def __init__(self, manager: VoiceManager, conversation: Conversation, output: asyncio.Queue[Any]) -> None:
        self.manager = manager
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
        reader = WavStreamReader()
        try:
            async for data in audio:
                pcm = reader.push(data)
                if pcm and reader.format is not None:
                    await self._feed(pcm, *reader.format)
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
            self.transcription = await self.manager.open_transcription(self.conversation.language)
            self.reader = asyncio.create_task(self._read(self.transcription))
        whole = len(pcm) // (width * channels) * width * channels
        for activity in self.transcription.feed(pcm[:whole], rate, width, channels):
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
        self.manager.metrics.interruption()
        self.manager.events.publish("interruption", conversation_id=self.conversation.id)
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
            self.manager.record_transcription(transcription, time.monotonic() - stop)
        finally:
            await transcription.close()
        if not transcription.text or not transcription.user_spoke:
            return  # nothing said: no answer
        await self.output.put(self._chunk(transcript=transcription.text, event="transcript"))
        if self._answering():
            await self._interrupt()
        self.answer = asyncio.create_task(self._respond(transcription.text, stop))

    async def _respond(self, text: str, end_of_speech: float) -> None:
        first_audio = True
        try:
            async for event in self.manager.process_text(self.conversation.id, text, speak=True):
                if isinstance(event, TextDelta):
                    await self.output.put(self._chunk(text_delta=event.text))
                elif isinstance(event, AudioOut):
                    if first_audio:
                        self.manager.metrics.observe("voice_to_voice", time.monotonic() - end_of_speech)
                        first_audio = False
                    await self.output.put(self._chunk(audio_data=float_to_s16(event.pcm)))
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
