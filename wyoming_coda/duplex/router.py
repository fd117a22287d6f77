"""The router of a duplex session: Moshi and the LLM, one voice.

Moshi converses in real time (turn-taking, backchannels, small talk). When the user asks for
something Moshi cannot do alone — a device command, a fact, the time, a timer, something from
memory — the router sends the utterance to the LLM (memory, personality, tools), and the LLM's
words are written into Moshi's inner monologue as they stream, so Moshi says them in its own
voice, at its own pace, interruptible like anything it says. While the LLM works Moshi holds
the floor: its own words are replaced by padding, so it does not invent the answer. Moshi's own
words go into the conversation history the LLM sees.

The LLM's tools are the server's own plus, when a Home Assistant is linked (turn/homelink.py), Home
Assistant's: their calls run inside Home Assistant with the conversation agent's exposure rules.
With none linked, the system prompt says that home control is not connected, so the answer
says so instead of pretending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..engines.moshi import MoshiSession
from ..turn.conversation import Conversations
from ..turn.events import TextDelta, ToolAnswered, ToolCalled, TurnDone
from ..turn.homelink import NO_HOME_PROMPT, HomeLinks
from ..turn.routing import Route, Router
from ..turn.runner import TurnOptions, TurnRunner
from ..turn.tools import ToolError, ToolManager
from .messages import LlmDone, LlmTurn, ServerEvent, TimerRang, ToolCallEvent, ToolResultEvent

_LOGGER = logging.getLogger(__name__)

Notify = Callable[[ServerEvent], Awaitable[None]]


class DuplexRouter:
    """Routes the utterances of one duplex session between Moshi and the LLM."""

    def __init__(
        self, turns: TurnRunner, conversations: Conversations, homes: HomeLinks, session: MoshiSession,
        conversation_id: str, notify: Notify, catch_up: float = 0.0,
    ) -> None:
        """`catch_up`: seconds the user transcript lags the audio (the STT's delay)."""
        self.turns = turns
        self.conversations = conversations
        self.homes = homes
        self.session = session
        self.conversation_id = conversation_id
        self.notify = notify  # session events for the client: llm turns, tool calls
        self.catch_up = catch_up
        # a MoshiRAG checkpoint decides itself when knowledge is needed (its trigger token)
        self.moshi_triggers = session.engine.retrieval_token is not None
        self._retrieval: asyncio.Task[None] | None = None
        self._last_utterance = ""
        self._heard = ""  # the user's words since the last end of utterance
        self._unanswered = ""  # utterances Moshi answered itself, not yet in the history
        self._moshi_said = ""  # Moshi's own words, not yet in the history
        self._turn: asyncio.Task[None] | None = None

    def route(self, text: str) -> Route:
        """Moshi for chit-chat, the LLM for what needs knowledge or action (with a MoshiRAG
        checkpoint, Moshi's own trigger decides instead: see `retrieval_triggered`)."""
        return Router.duplex(text, self.moshi_triggers)

    def user_words(self, text: str) -> None:
        self._heard += text

    def moshi_words(self, text: str, written: bool) -> None:
        if not written:
            self._moshi_said += text

    @property
    def answering(self) -> bool:
        """An LLM answer is being written or spoken."""
        return (self._turn is not None and not self._turn.done()) or self.session.writing

    async def end_of_utterance(self) -> Route | None:
        """The user stopped speaking: route what they said (None when they said nothing)."""
        text, self._heard = self._heard.strip(), ""
        if not text:
            return None
        route = self.route(text)
        self._last_utterance = text
        if route.name == "moshi":
            self._unanswered = f"{self._unanswered} {text}".strip()
            return route
        await self.ask_llm(text)
        return route

    async def ask_llm(self, text: str) -> None:
        """The LLM answers `text` (an utterance routed to it, or typed text: Moshi hears only
        speech), Moshi says the answer."""
        await self.interrupt()
        self._record_moshi()
        self._turn = asyncio.create_task(self._answer(text), name="duplex llm turn")

    async def interrupt(self) -> None:
        """The user talks over the answer: stop writing and cancel the LLM turn."""
        self.session.stop_saying()
        self.session.hold_floor(False)
        turn, self._turn = self._turn, None
        if turn is not None and not turn.done():
            turn.cancel()
            await asyncio.gather(turn, return_exceptions=True)

    def _record_moshi(self) -> None:
        """What was said between the user and Moshi alone, into the history the LLM sees."""
        if self._unanswered or self._moshi_said.strip():
            conversation = self.conversations.get(self.conversation_id)
            conversation.add_turn(self._unanswered, self._moshi_said.strip())
        self._unanswered = self._moshi_said = ""

    async def _home(self) -> tuple[ToolManager | None, str, str | None]:
        """Home Assistant's tools and prompt for the next answer, its name (None: not linked)."""
        link = self.homes.for_duplex()
        if link is None:
            return None, NO_HOME_PROMPT, None
        try:
            home = await link.context(None)
        except ToolError as err:
            _LOGGER.warning("No tools from Home Assistant (%s) for this answer: %s", link.name, err)
            return None, NO_HOME_PROMPT, None
        return home.tools, home.prompt, home.name

    async def _answer(self, text: str) -> None:
        self.session.hold_floor(True)
        try:
            link = self.homes.for_duplex()
            if link is not None and (speech := await link.local(text, None)) is not None:
                self.turns.record_local(self.conversation_id, text, speech)  # Home Assistant's agent did it
                self.session.say(speech)
                await self.notify(LlmDone(speech, None))
                return
            tools, prompt, home = await self._home()
            await self.notify(LlmTurn(text, home))
            options = TurnOptions(tools=tools, extra_prompt=prompt, own_timers=True)  # they ring here, in Moshi's voice
            turn = self.turns.answer(self.conversation_id, text, options)
            async with contextlib.aclosing(turn):
                async for event in turn:
                    if isinstance(event, TextDelta):
                        self.session.hold_floor(False)
                        self.session.say(event.text)
                    elif isinstance(event, ToolCalled):
                        await self.notify(ToolCallEvent(event.call.name, event.call.arguments))
                    elif isinstance(event, ToolAnswered):
                        await self.notify(ToolResultEvent(event.call.name, event.result, event.error))
                    elif isinstance(event, TurnDone):
                        await self.notify(LlmDone(event.text, event.error))
        finally:
            self.session.hold_floor(False)

    def retrieval_triggered(self) -> None:
        """Moshi sampled its retrieval trigger (MoshiRAG): the user asked for knowledge. Once the
        transcript has caught up, the LLM answers what the user said; Moshi says the answer,
        written into its text stream like any LLM answer."""
        if self.answering or (self._retrieval is not None and not self._retrieval.done()):
            return
        self._retrieval = asyncio.create_task(self._retrieve(), name="duplex retrieval")

    async def _retrieve(self) -> None:
        await asyncio.sleep(self.catch_up)
        text, self._heard = self._heard.strip(), ""
        text = text or self._last_utterance
        if text:
            self._unanswered = self._unanswered.removesuffix(text).strip()
            await self.ask_llm(text)

    async def timer_rang(self, name: str) -> None:
        """A server timer of this session ended: Moshi says so (and the client is told)."""
        self.session.say("Your timer is done." if name == "timer" else f"Your {name} timer is done.")
        await self.notify(TimerRang(name))

    async def close(self) -> None:
        if self._retrieval is not None:
            self._retrieval.cancel()
            await asyncio.gather(self._retrieval, return_exceptions=True)
        await self.interrupt()
