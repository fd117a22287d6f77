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

from ..config import VoiceConfig
from ..events import (
    ErrorEvent,
    EventBus,
    MemoryLearned,
    PersonalityAdapted,
    ResponseGenerated,
    RouteChosen,
    ToolCallMade,
)
from ..language import detect_language
from ..llm.base import LLMBackend, Message, tool_name
from ..metrics import Metrics
from ..personality import Personality
from ..speak.pipeline import Speaker, SpeakingPipeline
from .conversation import Conversation, Conversations, system_prompt
from .events import AudioOut, TextDelta, ToolAnswered, ToolCalled, TurnDone, TurnEvent
from .llm_rounds import TurnRequest, run_turn
from .memory import Memory, MemoryUnavailableError
from .moshi_turns import MoshiTurns
from .routing import Route, Router
from .tools import LocalTools, Toolbox, ToolManager

_LOGGER = logging.getLogger(__name__)

FALLBACK_ANSWER = "Sorry, I can't reach my language model right now."
TURN_FAILED = "Sorry, something went wrong on my side."
TIME_TOOLS = ("get_current_time", "GetDateTime", "HassGetCurrentTime")  # the server's, Home Assistant's
MOSHI_SILENT = "Sorry, I didn't catch that."  # Moshi found nothing to say: an answer, not an outage


class MemoryManager(Protocol):
    """What `set_memory_manager` takes (MemoryStore is the built-in one)."""

    async def add_turn(self, user_id: str, conversation_id: str, user_text: str, answer: str) -> list[str]: ...
    async def relevant(self, user_id: str, query: str, limit: int) -> list[Memory]: ...


class PersonalityManager(Protocol):
    """What `set_personality_manager` takes (PersonalityStore is the built-in one)."""

    def get(self, user_id: str) -> Personality: ...
    def adapt(self, user_id: str, feedback: str) -> Personality | None: ...


@dataclass(frozen=True)
class TurnOptions:
    """How one turn runs.

    tools: the client's tools (next to the server's own); extra_prompt: added to the system
    prompt; language: the conversation's language from now on; speak / voice: produce audio;
    memory: False neither recalls nor learns; personality: overrides fields of the user's
    profile (verbosity, tone) for this turn; own_timers: offer the server's timers next to the
    client's tools (by default only without them: Home Assistant's timers ring on the satellite,
    a talk-page session has none); history: the conversation so far as the client keeps it
    (Home Assistant's chat log, which also has the turns its own agent answered), used instead of
    the server's own; mode: this turn's mode (a conversation agent's own), one of the router's
    `modes()` (None: the configured mode)."""

    tools: ToolManager | None = None
    extra_prompt: str | None = None
    language: str | None = None
    speak: bool = False
    voice: str | None = None
    memory: bool = True
    personality: Mapping[str, str] | None = None
    own_timers: bool = False
    history: list[Message] | None = None
    mode: str | None = None


class TurnRunner:
    """Runs turns: route, request, hybrid processor or fallback, bookkeeping."""

    def __init__(
        self, config: VoiceConfig, llm: LLMBackend, speaker: Speaker, router: Router, conversations: Conversations,
        metrics: Metrics, events: EventBus, memory: MemoryManager | None, personality: PersonalityManager,
        tools: ToolManager | None, moshi: MoshiTurns | None,
    ) -> None:
        self.config = config
        self.llm = llm
        self.speaker = speaker
        self.router = router
        self.health = router.health
        self.conversations = conversations
        self.metrics = metrics
        self.events = events
        self.memory = memory
        self._memory_down = False  # reported once until it works again
        self.personality = personality
        self.tools = tools
        self.moshi = moshi  # None when the mode does not load Moshi

    def route(self, text: str, client_tools: bool = False, mode: str | None = None) -> Route:
        """Where a turn with this text goes in `mode` (None: the configured one)."""
        return self.router.pipeline(text, client_tools, mode)

    def answer(
        self, conversation_id: str, text: str, options: TurnOptions | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        """One turn of an open conversation (see `run`)."""
        return self.run(self.conversations.get(conversation_id), text, options or TurnOptions())

    async def messages(self, conversation: Conversation, text: str, route: Route, options: TurnOptions) -> TurnRequest:
        """The LLM request of a turn (system prompt, history, tools), speaking nowhere."""
        return await self._request(conversation, text, route, options, SpeakingPipeline(None))

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
        route = self.route(text, options.tools is not None, options.mode)
        self.metrics.route(route.name)
        self.events.publish(RouteChosen(conversation.id, route.name, route.reason))
        self._adapt_personality(conversation, text)
        speech = self.speaker.speech(voice) if options.speak else SpeakingPipeline(None)
        if route.name == "fallback":
            events = self._fallback(route, speech)
        elif route.name == "moshi" and self.moshi is not None:
            events = self._moshi(self.moshi, route, text, options.speak, speech)
        else:
            events = run_turn(self.llm, await self._request(conversation, text, route, options, speech))
        start = time.monotonic()
        try:
            async with contextlib.aclosing(events):  # closing this iterator cancels the turn at once
                async for event in events:
                    if isinstance(event, ToolCalled):
                        self.events.publish(ToolCallMade(conversation.id, event.call.name, event.call.arguments))
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

    def record_local(self, conversation_id: str, text: str, answer: str) -> None:
        """A turn the client's own agent answered (Home Assistant's, local first): counted as the
        `local` route and kept in the history, so the next LLM turn knows what happened."""
        conversation = self.conversations.get(conversation_id)
        conversation.last_active = time.monotonic()
        conversation.add_turn(text, answer)
        self.metrics.route("local")
        self.metrics.turn()
        self.events.publish(RouteChosen(conversation_id, "local", "answered by the client's own agent"))
        self.events.publish(ResponseGenerated(conversation_id, answer, "local", conversation.language, None, {}, 0.0))

    def _memory_failed(self, conversation_id: str, err: MemoryUnavailableError) -> None:
        """Turns go on without memory; the failure is reported once (log, metric, event)."""
        if self._memory_down:
            return
        self._memory_down = True
        _LOGGER.error("Memory is unavailable, turns go on without it: %s", err)
        self.metrics.error("memory-unavailable")
        self.events.publish(ErrorEvent(conversation_id, "memory-unavailable", str(err)))

    def _adapt_personality(self, conversation: Conversation, text: str) -> None:
        integration = self.config.integration
        if not (integration.personality_enabled and integration.personality_adaptation):
            return
        adapted = self.personality.adapt(conversation.user_id, text)
        if adapted is not None:
            self.events.publish(PersonalityAdapted(conversation.id, adapted.verbosity, adapted.tone))

    async def _request(
        self, conversation: Conversation, text: str, route: Route, options: TurnOptions, speech: SpeakingPipeline
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
        toolbox = Toolbox(managers) if managers else None
        offered = [tool_name(schema) for schema in toolbox.schemas()] if toolbox is not None else []
        prompt = system_prompt(
            profile.overridden(options.personality) if options.personality else profile,
            [self.config.personality.extra_prompt, options.extra_prompt or ""],
            conversation.language, memories, clock=not any(name.endswith(TIME_TOOLS) for name in offered),
        )
        return TurnRequest(
            messages=conversation.messages(prompt, text, options.history),
            toolbox=toolbox,
            route=route.name,
            max_tool_iterations=self.config.external_llm.max_tool_iterations,
            max_answer_tokens=self.config.external_llm.max_answer_tokens,
            max_answer_seconds=self.config.external_llm.max_answer_seconds,
            max_turn_seconds=self.config.external_llm.max_turn_seconds,
            holding_seconds=self.config.external_llm.holding_phrase_seconds,
            speech=speech,
            parallel=self.config.external_llm.parallel_processing,
            speak_before_tools=self.config.integration.tool_calling_during_speech,
        )

    async def _fallback(self, route: Route, speech: SpeakingPipeline) -> AsyncGenerator[TurnEvent, None]:
        """An immediate spoken apology instead of another LLM timeout."""
        yield TextDelta(FALLBACK_ANSWER)
        async with contextlib.aclosing(speech.say(FALLBACK_ANSWER)) as frames:
            async for frame in frames:
                yield AudioOut(frame)
        yield TurnDone(FALLBACK_ANSWER, route.name, "llm-unavailable")

    async def _moshi(
        self, moshi: MoshiTurns, route: Route, text: str, speak: bool, speech: SpeakingPipeline
    ) -> AsyncGenerator[TurnEvent, None]:
        """Moshi answers from the user's audio of this utterance (typed text: from Kyutai TTS's
        reading of it); its audio is kept for `coda-tts` to play when asked for these words. When
        Moshi finds nothing to say, the turn still gets a short spoken answer."""
        start = time.monotonic()
        heard = moshi.heard.take(text)
        if heard is None:
            heard = await moshi.hear_text(text)
        reply = await moshi.reply(heard)
        timings = {"moshi_answer": time.monotonic() - start}
        if not reply.text:
            yield TextDelta(MOSHI_SILENT)
            async with contextlib.aclosing(speech.say(MOSHI_SILENT)) as frames:
                async for frame in frames:
                    yield AudioOut(frame)
            yield TurnDone(MOSHI_SILENT, route.name, None, timings)
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
        if "prompt_tokens" in done.usage:
            self.metrics.llm_prompt(done.usage["prompt_tokens"], done.usage.get("cached_tokens"))
        if done.error:
            self.metrics.error(done.error)
            self.events.publish(ErrorEvent(conversation.id, done.error, done.text))
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
                    self.events.publish(MemoryLearned(conversation.id, learned))
        self.events.publish(ResponseGenerated(conversation.id, done.text, done.route, done.language, done.voice,
                                              {k: v * 1000 for k, v in done.timings.items()}, seconds))
