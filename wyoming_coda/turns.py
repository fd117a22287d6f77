"""One conversation turn from the user's text: the route (mode, LLM health, engine load), the
request (memory, personality, tools, system prompt), the hybrid processor or the fallback
answer, and what a finished turn leaves behind (history, memory, metrics, events)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from .config import VoiceConfig
from .conversation import Conversation, Route, route_turn, system_prompt
from .events import EventBus
from .hybrid import AudioOut, TextDelta, ToolAnswered, ToolCalled, TurnDone, TurnEvent, TurnRequest, run_turn
from .language import detect_language
from .llm.base import LLMBackend
from .memory import Memory, MemoryUnavailableError
from .metrics import Metrics
from .moshiturns import MoshiTurns
from .personality import Personality
from .speaking import Speaker, Speech
from .tools import LocalTools, Toolbox, ToolManager

_LOGGER = logging.getLogger(__name__)

LLM_DOWN_SECONDS = 30.0  # adaptive mode routes around an LLM that failed this recently
FALLBACK_ANSWER = "Sorry, I can't reach my language model right now."
TURN_FAILED = "Sorry, something went wrong on my side."


class MemoryManager(Protocol):
    """What `set_memory_manager` takes (MemoryStore is the built-in one)."""

    async def add_turn(self, user_id: str, conversation_id: str, user_text: str, answer: str) -> list[str]: ...
    async def relevant(self, user_id: str, query: str, limit: int) -> list[Memory]: ...


class PersonalityManager(Protocol):
    """What `set_personality_manager` takes (PersonalityStore is the built-in one)."""

    def get(self, user_id: str) -> Personality: ...
    def adapt(self, user_id: str, feedback: str) -> Personality | None: ...


class Saturation(Protocol):
    """Whether an engine has no free row (the model store)."""

    def saturated(self, kind: str) -> bool: ...


@dataclass(frozen=True)
class TurnOptions:
    """How one turn runs.

    tools: the client's tools (next to the server's own); extra_prompt: added to the system
    prompt; language: the conversation's language from now on; speak / voice: produce audio;
    memory: False neither recalls nor learns; personality: overrides fields of the user's
    profile (verbosity, tone) for this turn; own_timers: offer the server's timers next to the
    client's tools (by default only without them: Home Assistant's timers ring on the satellite,
    a talk-page session has none)."""

    tools: ToolManager | None = None
    extra_prompt: str | None = None
    language: str | None = None
    speak: bool = False
    voice: str | None = None
    memory: bool = True
    personality: Mapping[str, str] | None = None
    own_timers: bool = False


class LLMHealth:
    """When the LLM last failed a turn."""

    def __init__(self) -> None:
        self._failed_at = float("-inf")

    def failed(self) -> None:
        self._failed_at = time.monotonic()

    @property
    def healthy(self) -> bool:
        return time.monotonic() - self._failed_at > LLM_DOWN_SECONDS


class TurnRunner:
    """Runs turns: route, request, hybrid processor or fallback, bookkeeping."""

    def __init__(
        self, config: VoiceConfig, llm: LLMBackend, speaker: Speaker, engines: Saturation,
        metrics: Metrics, events: EventBus, memory: MemoryManager | None, personality: PersonalityManager,
        tools: ToolManager | None, moshi: MoshiTurns | None,
    ) -> None:
        self.config = config
        self.llm = llm
        self.speaker = speaker
        self.engines = engines
        self.metrics = metrics
        self.events = events
        self.memory = memory
        self._memory_down = False  # reported once until it works again
        self.personality = personality
        self.tools = tools
        self.moshi = moshi  # None when the mode does not load Moshi
        self.health = LLMHealth()

    def route(self, text: str) -> Route:
        """Where a turn with this text goes in the configured mode."""
        mode = self.config.mode
        if mode == "moshi_only":
            return Route("moshi", "moshi_only mode")
        if mode == "hybrid":
            return Route("llm", "hybrid mode")
        return route_turn(text, self.health.healthy, self.engines.saturated("tts"), moshi=self.moshi is not None)

    async def messages(self, conversation: Conversation, text: str, route: Route, options: TurnOptions) -> TurnRequest:
        """The LLM request of a turn (system prompt, history, tools), speaking nowhere."""
        return await self._request(conversation, text, route, options, Speech(None))

    async def run(
        self, conversation: Conversation, text: str, options: TurnOptions
    ) -> AsyncGenerator[TurnEvent, None]:
        """The events of one turn; closing the iterator cancels it (barge-in)."""
        conversation.last_active = time.monotonic()
        if options.personality:
            Personality().overridden(options.personality)  # refuse bad fields before anything runs
        if options.language:  # the client's (Home Assistant: the pipeline's), else the user's words'
            conversation.language = options.language
        elif (detected := detect_language(text, self.speaker.languages)) is not None:
            conversation.language = detected
        voice = options.voice or self.speaker.voice_for(conversation.language)
        route = self.route(text)
        self.metrics.route(route.name)
        self.events.publish("route", conversation_id=conversation.id, route=route.name, reason=route.reason)
        self._adapt_personality(conversation, text)
        speech = self.speaker.speech(voice) if options.speak else Speech(None)
        if route.name == "fallback":
            events = self._fallback(route, speech)
        elif route.name == "moshi" and self.moshi is not None:
            events = self._moshi(self.moshi, route, text, options.speak)
        else:
            events = run_turn(self.llm, await self._request(conversation, text, route, options, speech))
        start = time.monotonic()
        try:
            async with contextlib.aclosing(events):  # closing this iterator cancels the turn at once
                async for event in events:
                    if isinstance(event, ToolCalled):
                        self.events.publish("tool_call", conversation_id=conversation.id, name=event.call.name,
                                            arguments=event.call.arguments)
                    elif isinstance(event, ToolAnswered):
                        self.metrics.tool_call(ok=event.error is None)
                    elif isinstance(event, TurnDone):
                        event = replace(event, language=conversation.language, voice=voice)
                        self.speaker.last_language = conversation.language
                        await self._finish(conversation, text, event, time.monotonic() - start, options.memory)
                    yield event
        except Exception:  # an engine that failed mid-turn (a model that did not load, a failed step)
            _LOGGER.exception("Turn failed")
            done = TurnDone(TURN_FAILED, route.name, "turn-failed", language=conversation.language, voice=voice)
            await self._finish(conversation, text, done, time.monotonic() - start, options.memory)
            yield done  # every client (Wyoming, duplex, the voice API) still gets the end of the turn

    def _memory_failed(self, conversation_id: str, err: MemoryUnavailableError) -> None:
        """Turns go on without memory; the failure is reported once (log, metric, event)."""
        if self._memory_down:
            return
        self._memory_down = True
        _LOGGER.error("Memory is unavailable, turns go on without it: %s", err)
        self.metrics.error("memory-unavailable")
        self.events.publish("error", conversation_id=conversation_id, code="memory-unavailable", text=str(err))

    def _adapt_personality(self, conversation: Conversation, text: str) -> None:
        integration = self.config.integration
        if not (integration.personality_enabled and integration.personality_adaptation):
            return
        adapted = self.personality.adapt(conversation.user_id, text)
        if adapted is not None:
            self.events.publish("personality", conversation_id=conversation.id, verbosity=adapted.verbosity,
                                tone=adapted.tone)

    async def _request(
        self, conversation: Conversation, text: str, route: Route, options: TurnOptions, speech: Speech
    ) -> TurnRequest:
        full = route.name == "llm"
        memories: list[Memory] = []
        if full and options.memory and self.memory is not None:
            try:
                memories = await self.memory.relevant(conversation.user_id, text,
                                                      self.config.integration.memory_context_limit)
            except MemoryUnavailableError as err:
                self._memory_failed(conversation.id, err)
        own = self.tools
        if isinstance(own, LocalTools):  # timers ring for this conversation; none next to Home Assistant's
            own = own.for_turn(conversation.id, timers=options.tools is None or options.own_timers)
        managers = [m for m in (options.tools, own) if m is not None] if full else []
        personal = self.config.integration.personality_enabled
        profile = self.personality.get(conversation.user_id if personal else "default")
        prompt = system_prompt(
            profile.overridden(options.personality) if options.personality else profile,
            [self.config.personality.extra_prompt, options.extra_prompt or ""],
            conversation.language, memories,
        )
        return TurnRequest(
            messages=conversation.messages(prompt, text),
            toolbox=Toolbox(managers) if managers else None,
            route=route.name,
            max_tool_iterations=self.config.external_llm.max_tool_iterations,
            max_answer_tokens=self.config.external_llm.max_answer_tokens,
            max_answer_seconds=self.config.external_llm.max_answer_seconds,
            speech=speech,
            parallel=self.config.external_llm.parallel_processing,
            speak_before_tools=self.config.integration.tool_calling_during_speech,
        )

    async def _fallback(self, route: Route, speech: Speech) -> AsyncGenerator[TurnEvent, None]:
        """An immediate spoken apology instead of another LLM timeout."""
        yield TextDelta(FALLBACK_ANSWER)
        async with contextlib.aclosing(speech.say(FALLBACK_ANSWER)) as frames:
            async for frame in frames:
                yield AudioOut(frame)
        yield TurnDone(FALLBACK_ANSWER, route.name, "llm-unavailable")

    async def _moshi(
        self, moshi: MoshiTurns, route: Route, text: str, speak: bool
    ) -> AsyncGenerator[TurnEvent, None]:
        """Moshi answers from the user's audio of this utterance (typed text: from Kyutai TTS's
        reading of it); its audio is kept for `coda-tts` to play when asked for these words."""
        start = time.monotonic()
        heard = moshi.heard.take(text)
        if heard is None:
            heard = await moshi.hear_text(text)
        reply = await moshi.reply(heard)
        timings = {"moshi_answer": time.monotonic() - start}
        if not reply.text:
            yield TurnDone("", route.name, "moshi-silent", timings)
            return
        yield TextDelta(reply.text)
        if speak:
            for frame in reply.frames:
                yield AudioOut(frame)
        yield TurnDone(reply.text, route.name, None, timings)

    async def _finish(
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
                self.health.failed()
        else:
            conversation.add_turn(text, done.text)
            if memory and self.memory is not None:
                try:
                    learned = await self.memory.add_turn(conversation.user_id, conversation.id, text, done.text)
                except MemoryUnavailableError as err:  # the turn is answered all the same
                    self._memory_failed(conversation.id, err)
                    learned = []
                else:
                    self._memory_down = False
                if learned:
                    self.events.publish("memory", conversation_id=conversation.id, learned=learned)
        self.events.publish("response_generated", conversation_id=conversation.id, text=done.text,
                            route=done.route, language=done.language, voice=done.voice,
                            latency_ms={k: v * 1000 for k, v in done.timings.items()}, seconds=seconds)
