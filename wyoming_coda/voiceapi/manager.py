"""`VoiceManager`: the spec's Python API.

A façade for library users, and the composition of the voice system: it builds the parts with
one job each — the model store (`models`), conversations, the turn runner (`turn`: route,
request, tool loop, fallback, LLM health), the speaker (`speak`), the transcriber (`listen`), the
voice-stream conductor and the analytics provider (`voiceapi`) — which the server then hands to
the Wyoming services, duplex sessions and HTTP routes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..aio import task_stream
from ..config import VoiceConfig
from ..engines.moshi import MoshiSession
from ..events import EventBus, TranscriptEvent
from ..listen.transcription import Transcriber, Transcription
from ..llm import LLMBackend, create_backend
from ..llm.base import Message
from ..metrics import Analytics, Metrics
from ..models.registry import EngineRegistry
from ..models.store import ModelStore
from ..personality import Personality, PersonalityStore
from ..speak.pipeline import Speaker, SpeakingPipeline
from ..turn.answer_clock import AnswerClock
from ..turn.conversation import Conversations
from ..turn.events import AudioOut, ToolAnswered, TurnDone, TurnEvent
from ..turn.homelink import HomeLinks
from ..turn.memory import MemoryStore
from ..turn.moshi_turns import MoshiTurns
from ..turn.routing import LLMHealth, Router
from ..turn.runner import MemoryManager, PersonalityManager, TurnOptions, TurnRunner
from ..turn.tools import LocalTools, TimerBells, ToolManager
from .analytics import AnalyticsProvider
from .formats import VoiceDecoder, VoiceEncoder
from .stream import VoiceStreamChunk, VoiceStreamConductor

__all__ = ["VoiceManager", "VoiceResponse", "VoiceStreamChunk"]


@dataclass
class VoiceResponse:
    """The answer to one voice turn."""

    conversation_id: str
    transcript: str
    text_content: str
    audio_data: bytes  # in `audio.format` (a WAV file, 24 kHz 16-bit mono by default)
    route: str
    latency_ms: dict[str, float] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class VoiceManager:
    """Owns models, LLM, memory, personality, tools and conversations of one process.

    The server hands its parts (`transcriber`, `speaker`, `turns`, `conversations`, `metrics`,
    `events`, ...) to the Wyoming services, duplex sessions and HTTP routes; library users call
    the methods below."""

    def __init__(self, config: VoiceConfig, engines: EngineRegistry | None = None) -> None:
        """`engines`: the engine registry of the profiles (default: the built-in engines)."""
        self.config = config
        self.metrics = Metrics()
        self.events = EventBus()
        self.homes = HomeLinks(config.integration.duplex_home_assistant)  # linked Home Assistants
        self.store = ModelStore(config, on_step=self.metrics.engine_step, engines=engines,
                                hints=self.homes.vocabulary.prompt)
        self.llm: LLMBackend = create_backend(config.external_llm, config.moshi.external_llm_enabled)
        self.conversations = Conversations(self.metrics, self.events)
        self.speaker = Speaker(self.store, config.tts.voice, config.tts.feed,
                               dict(entry.split("=", 1) for entry in config.tts.language_voices),
                               self.store.languages("tts"), self.events, config.server.row_wait_seconds)
        data_dir = Path(config.server.data_dir)
        default = Personality(
            name=config.personality.name, style=config.personality.style,
            verbosity=config.personality.verbosity, tone=config.personality.tone,
        )
        self.memory = MemoryStore(data_dir / "memory.db", config.memory.keep_turns_days) if config.integration.memory_enabled else None
        self.timers = TimerBells(self.events)
        self.answer_clock = AnswerClock(self.metrics)  # voice to voice of pipeline turns
        self.local_tools = LocalTools(on_timer=self.timers.ring)
        self.moshi = (MoshiTurns(self.store, self.speaker, config.moshi.reply_max_seconds,
                                 config.server.row_wait_seconds)
                      if "moshi" in self.store.slots else None)
        self.transcriber = Transcriber(self.store, config.audio, config.stt, on_final=self._record_transcription,
                                       row_wait=config.server.row_wait_seconds)
        health = LLMHealth()
        self.turns = TurnRunner(
            config, self.llm, self.speaker, Router(config, health, self.store, self.moshi is not None,
                                                        config.moshi.external_llm_enabled),
            self.conversations, self.metrics, self.events, self.memory,
            PersonalityStore(data_dir / "personality.json", default),
            self.local_tools if config.integration.tools_enabled else None, self.moshi,
        )
        self.analytics = AnalyticsProvider(config.mode, self.metrics, self.store, self.conversations, self.llm,
                                           health)

    # -- lifecycle ------------------------------------------------------------------------------
    async def initialize(self, wait: bool = True) -> None:
        """Start loading the models (and wait for them unless `wait` is False)."""
        self.store.start()
        if wait:
            await self.store.wait_all()

    async def close(self) -> None:
        await self.analytics.close()
        await self.local_tools.close()
        await self.llm.close()
        if self.memory is not None:
            await self.memory.close()
        await self.store.close()

    async def set_memory_manager(self, memory_manager: MemoryManager | None) -> None:
        self.turns.memory = memory_manager

    async def set_personality_manager(self, personality_manager: PersonalityManager) -> None:
        self.turns.personality = personality_manager

    async def set_tool_manager(self, tool_manager: ToolManager | None) -> None:
        self.turns.tools = tool_manager

    # -- conversations --------------------------------------------------------------------------
    async def start_conversation(
        self, conversation_id: str | None = None, user_id: str = "default", language: str | None = None,
        expire_when_idle: bool = False,
    ) -> str:
        """Open (or continue) a conversation. `expire_when_idle`: it ends by itself after
        `integration.conversation_timeout` seconds without a turn (for clients that never say
        goodbye, like Home Assistant)."""
        timeout = self.config.integration.conversation_timeout if expire_when_idle else None
        return self.conversations.start(conversation_id, user_id, language, timeout)

    async def end_conversation(self, conversation_id: str) -> None:
        self.conversations.end(conversation_id)

    # -- speech ---------------------------------------------------------------------------------
    async def open_transcription(self, language: str | None = None, duplex: bool = False) -> Transcription:
        """A streaming transcription: an STT row behind the audio front end (enhancement and
        VAD as the `audio` config says; `duplex`: echo cancellation and frame-exact resampling
        for a session whose output the server plays)."""
        return await self.transcriber.open(language, duplex)

    def _record_transcription(self, transcription: Transcription, seconds_after_stop: float) -> None:
        """Account a finished transcription (latency, audio quality, event); keep its audio for
        Moshi, should the turn of these words go to Moshi."""
        if self.moshi is not None and transcription.text:
            self.moshi.heard.put(transcription.text, transcription.audio())
        self.metrics.observe("stt_final", seconds_after_stop)
        if transcription.end_of_speech_delay is not None:
            self.metrics.observe("vad_end_of_speech", transcription.end_of_speech_delay)
        quality = transcription.quality()
        if quality is not None:
            self.metrics.audio_quality({k: v for k, v in vars(quality).items() if v is not None})
        self.events.publish(TranscriptEvent("user", transcription.text, True, language=transcription.language))

    async def check_voice(self, voice: str | None) -> str:
        """The voice to use (the default for None); raises UnknownVoiceError."""
        return await self.speaker.check_voice(voice)

    def speech(self, voice: str | None = None) -> SpeakingPipeline:
        """The speaking pipeline: push text, end it, read 80 ms frames (one TTS row); without a
        `voice`, the voice of the text's language."""
        return self.speaker.speech(voice)

    def moshi_answer_audio(self, text: str) -> list[np.ndarray] | None:
        """Moshi's own audio of an answer it gave in a pipeline turn, if `text` is that answer."""
        return self.moshi.answers.get(text) if self.moshi is not None else None

    def may_be_moshi_answer(self, text: str) -> bool:
        """Whether `text` (still streaming in) may become one of Moshi's recent answers."""
        return self.moshi is not None and self.moshi.answers.may_become(text)

    async def open_duplex(self, voice: str | None = None) -> MoshiSession:
        """A full-duplex Moshi session (user frames in, Moshi's frames and text out) with the
        Moshi of `voice` (None: the default; `store.moshi_voices()` lists them)."""
        return await (await self.store.moshi(voice)).open()

    # -- turns ----------------------------------------------------------------------------------
    def process_text(
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
        own_timers: bool = False,
    ) -> AsyncGenerator[TurnEvent, None]:
        """One turn from the user's text: text deltas, tool calls, audio frames (when `speak`),
        then TurnDone (see `turns.TurnOptions`). Closing the iterator cancels the turn."""
        options = TurnOptions(tools, extra_prompt, language, speak, voice, memory, personality, own_timers)
        return self.turns.answer(conversation_id, text, options)

    async def turn_messages(self, conversation_id: str, text: str) -> list[Message]:
        """The messages the LLM would get for `text` as the next turn (system prompt, history)."""
        conversation = self.conversations.get(conversation_id)
        request = await self.turns.messages(conversation, text, self.turns.route(text), TurnOptions())
        return request.messages

    def on_timer(self, conversation_id: str, listener: Callable[[str], Awaitable[None]]) -> Callable[[], None]:
        """Call `listener(name)` when a timer of this conversation rings; returns the way to stop."""
        return self.timers.listen(conversation_id, listener)

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
            return transcription.text, time.monotonic() - stop
        finally:
            await transcription.close()

    async def process_voice_input(self, conversation_id: str, audio_data: bytes) -> VoiceResponse:
        """A recording of the user speaking (`audio.format`: a WAV file by default) → the
        transcript, the answer text and its audio in the same format."""
        conversation = self.conversations.get(conversation_id)
        pcm, rate, width, channels = VoiceDecoder(self.config.audio).whole(audio_data)
        transcript, stt_seconds = await self._transcribe_all(pcm, rate, width, channels, conversation.language)
        frames: list[np.ndarray] = []
        calls: list[dict[str, Any]] = []
        done = TurnDone("", "none")
        if transcript:
            async with contextlib.aclosing(self.process_text(conversation_id, transcript, speak=True)) as turn:
                async for event in turn:
                    if isinstance(event, AudioOut):
                        frames.append(event.pcm)
                    elif isinstance(event, ToolAnswered):
                        calls.append({"name": event.call.name, "arguments": event.call.arguments,
                                      "result": event.result, "error": event.error})
                    elif isinstance(event, TurnDone):
                        done = event
        if "tts_first_audio" in done.timings:
            self.metrics.observe("voice_to_voice", stt_seconds + done.timings["tts_first_audio"])
        audio = VoiceEncoder(self.config.audio, (await self.store.tts()).sample_rate).file(frames)
        latency = {"stt": stt_seconds * 1000, **{k: v * 1000 for k, v in done.timings.items()}}
        return VoiceResponse(conversation_id, transcript, done.text, audio, done.route, latency, calls, done.error)

    async def process_voice_stream(
        self, conversation_id: str, audio: AsyncIterable[bytes]
    ) -> AsyncIterator[VoiceStreamChunk]:
        """A live audio stream (`audio.format`: a WAV header then PCM by default) → transcripts
        and spoken answers (audio chunks in that format).

        Each end of speech (VAD or the STT end-of-turn head) closes the user's turn and starts
        the answer while audio keeps coming; speech during an answer interrupts it.
        """
        conversation = self.conversations.get(conversation_id)

        async def conduct(output: Any) -> None:
            conductor = VoiceStreamConductor(self.transcriber, self.turns, self.metrics, self.events,
                                             self.config.audio, conversation, output)
            await conductor.run(audio)

        async with contextlib.aclosing(task_stream(conduct, "coda voice stream")) as chunks:
            async for chunk in chunks:
                yield chunk

    # -- analytics ------------------------------------------------------------------------------
    def refresh_metrics(self) -> None:
        """Update the gauges that are read, not counted (engine occupancy, memory)."""
        self.analytics.refresh()

    async def get_analytics(self) -> Analytics:
        return await self.analytics.analytics()

    def health(self) -> dict[str, Any]:
        """Model states for `/healthz`: ready when every model of the mode is loaded."""
        return self.store.health()
