"""Wyoming `handle`: a conversation turn from the user's text, streamed back, with tool calls
that the client answers (see docs/protocol.md).

Client → server: `transcript` (text, language, context: conversation_id, user/device ids,
optional `tools` and `extra_system_prompt`), later `coda-tool-result` for each tool call.
Server → client: handled-start, handled-chunk*, coda-tool-call (only for the client's own
tools), coda-progress (every few seconds while nothing is said: the turn is alive; once with
`say`, a holding phrase), handled-stop, then `handled` (or `not-handled` when the turn failed) —
a plain `handled` always ends the turn, since Home Assistant's wyoming client reads only that.
A transcript whose context has `answered_locally` (the client's own agent answered it) is only
recorded: history, the `local` route in analytics.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wyoming.asr import Transcript
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop, NotHandled

from ..access import is_user_id, request_proven
from ..llm.base import ToolCall
from ..personality import Personality
from ..turn.answer_clock import AnswerClock
from ..turn.conversation import Conversations
from ..turn.events import Progress, TextDelta, TurnDone
from ..turn.runner import TurnOptions, TurnRunner
from ..turn.tools import RemoteTools, ToolError
from .connection import Connection

_LOGGER = logging.getLogger(__name__)

TOOL_CALL = "coda-tool-call"
TOOL_RESULT = "coda-tool-result"
TOOL_TIMEOUT = 30.0
HOUSEHOLD = "household"  # memory and personality of turns without a Home Assistant user
ANONYMOUS = "anonymous"  # the profile of turns whose client does not prove the server's token
ANONYMOUS_PREFIX = "anonymous:"  # their conversations never meet those of a proven client
PROGRESS = "coda-progress"
EVENT_TYPES = frozenset({Transcript("").event().type, TOOL_RESULT})
MAX_HISTORY = 40  # messages of a client's history
MAX_TEXT = 8000  # characters of one of them


def _context_problem(context: Any) -> str | None:
    """What is wrong with a transcript's context, or None."""
    if not isinstance(context, dict):
        return "context must be an object"
    tools = context.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        return "context.tools must be a list of tool objects"
    if not isinstance(context.get("memory", True), bool):
        return "context.memory must be true or false"
    user_id = context.get("user_id")
    if user_id is not None and not is_user_id(user_id):
        return "context.user_id must be 1 to 128 letters, digits or ._@:-"
    conversation_id = context.get("conversation_id")
    if conversation_id is not None and not (isinstance(conversation_id, str) and 0 < len(conversation_id) <= 128):
        return "context.conversation_id must be a string of at most 128 characters"
    history = context.get("history")
    if history is not None and not _is_history(history):
        return (f"context.history must be a list of at most {MAX_HISTORY} {{role: user|assistant, content}} "
                f"messages of at most {MAX_TEXT} characters")
    local = context.get("answered_locally")
    if local is not None and not (isinstance(local, str) and 0 < len(local) <= MAX_TEXT):
        return f"context.answered_locally must be the answer's text, 1 to {MAX_TEXT} characters"
    personality = context.get("personality")
    if personality is not None:
        if not isinstance(personality, dict):
            return "context.personality must be an object"
        try:
            Personality().overridden(personality)
        except ValueError as err:
            return f"context.{err}"
    return None


def _is_history(history: Any) -> bool:
    return isinstance(history, list) and len(history) <= MAX_HISTORY and all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
        and len(m["content"]) <= MAX_TEXT for m in history)


def _anonymous(context: dict[str, Any]) -> dict[str, Any]:
    """A request without the proof: no memory, no user's profile, a conversation of its own."""
    conversation_id = context.get("conversation_id")
    if conversation_id and not str(conversation_id).startswith(ANONYMOUS_PREFIX):
        conversation_id = ANONYMOUS_PREFIX + str(conversation_id)
    return {**context, "memory": False, "user_id": ANONYMOUS, "conversation_id": conversation_id}


class HandleService:
    """Conversation turns for one connection."""

    def __init__(
        self, connection: Connection, turns: TurnRunner, conversations: Conversations, idle_timeout: float,
        token: str, clock: AnswerClock | None = None,
    ) -> None:
        """`idle_timeout`: seconds after which a conversation without a turn ends (Home Assistant
        never says goodbye); `token`: the server's, which a client proves to get a user's memory
        and personality (the Wyoming port itself has no authentication); `clock`: where a spoken
        command's answer is noted (voice to voice)."""
        self.token = token
        self.clock = clock
        self.connection = connection
        self.turns = turns
        self.conversations = conversations
        self.idle_timeout = idle_timeout
        self._turn: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[tuple[Any, str | None]]] = {}

    def accepts(self, event_type: str) -> bool:
        return event_type in EVENT_TYPES

    async def handle(self, event: Event) -> None:
        if event.type == TOOL_RESULT:
            await self._tool_result(event.data)
            return
        transcript = Transcript.from_event(event)
        context = transcript.context or {}
        problem = _context_problem(context) or self._mode_problem(context.get("mode"))
        if problem:  # the turn still ends: a client that reads only `handled` / `not-handled` waits for nothing
            await self.connection.send_error(f"transcript: {problem}", "malformed-event")
            await self.connection.write_event(NotHandled(text=f"transcript: {problem}").event())
            return
        await self.close()  # a new request replaces (barge-in) the one in progress
        if not self._proven(transcript.text, context):
            context = _anonymous(context)
        self._turn = asyncio.create_task(self._run(transcript.text, transcript.language, context), name="handle turn")

    def _mode_problem(self, mode: Any) -> str | None:
        """Why a turn cannot have the mode it asks for (None: it can, or it asks for none)."""
        modes = self.turns.router.modes()
        if mode is None or mode in modes:
            return None
        return f"context.mode {mode!r} is not loaded on this server (it serves {', '.join(modes) or 'none'})"

    def _proven(self, text: str, context: dict[str, Any]) -> bool:
        """Whether the client proved the server's token for this request (the Coda integration
        signs each transcript: docs/security.md)."""
        return request_proven(self.token, text, context)

    async def _tool_result(self, data: dict[str, Any]) -> None:
        future = self._pending.pop(str(data.get("id")), None)
        if future is None:
            await self.connection.send_error(f"{TOOL_RESULT}: no tool call with id {data.get('id')!r}", "unknown-tool-call")
            return
        if not future.done():
            error = data.get("error")
            future.set_result((data.get("result"), str(error) if error else None))

    async def _call_remote(self, call: ToolCall) -> Any:
        future: asyncio.Future[tuple[Any, str | None]] = asyncio.get_running_loop().create_future()
        self._pending[call.id] = future
        await self.connection.write_event(
            Event(TOOL_CALL, {"id": call.id, "name": call.name, "arguments": call.arguments})
        )
        try:
            result, error = await asyncio.wait_for(future, TOOL_TIMEOUT)
        except TimeoutError:
            raise ToolError(f"the client did not answer tool call {call.name} in {TOOL_TIMEOUT:.0f} s") from None
        finally:
            self._pending.pop(call.id, None)
        if error:
            raise ToolError(error)
        return result

    async def _run(self, text: str, language: str | None, context: dict[str, Any]) -> None:
        # the Home Assistant user's own memory and profile; satellites without a user share the household's
        user_id = str(context.get("user_id") or HOUSEHOLD)
        conversation_id = self.conversations.start(context.get("conversation_id"), user_id, language,
                                                   self.idle_timeout)
        out_context = {"conversation_id": conversation_id}
        if local := context.get("answered_locally"):  # the client's own agent answered: noted, not answered again
            self.turns.record_local(conversation_id, text, local)
            await self.connection.write_event(Handled(text=local, context=out_context).event())
            return
        history = [{"role": m["role"], "content": m["content"]} for m in context["history"]] \
            if context.get("history") is not None else None
        tools = RemoteTools(context["tools"], self._call_remote) if context.get("tools") else None
        await self.connection.write_event(HandledStart(context=out_context).event())
        done: TurnDone | None = None
        options = TurnOptions(tools=tools, extra_prompt=context.get("extra_system_prompt"), language=language,
                              memory=context.get("memory", True), personality=context.get("personality"),
                              history=history, mode=context.get("mode"))
        pending = self.clock.answering(text) if self.clock is not None else None
        async for event in self.turns.answer(conversation_id, text, options):
            if isinstance(event, TextDelta):
                if pending is not None:
                    pending.text += event.text
                await self.connection.write_event(HandledChunk(text=event.text).event())
            elif isinstance(event, Progress):  # alive, nothing to say yet (a silent client is a dead server)
                data = {"stage": event.stage, "seconds": event.seconds}
                await self.connection.write_event(Event(PROGRESS, {**data, "say": event.say} if event.say else data))
            elif isinstance(event, TurnDone):
                done = event
        await self.connection.write_event(HandledStop().event())
        if done is None or done.error:
            await self.connection.write_event(NotHandled(text=done.text if done else None, context=out_context).event())
        else:
            answer = {**out_context, "language": done.language, "voice": done.voice}
            await self.connection.write_event(Handled(text=done.text, context=answer).event())

    async def close(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None and not turn.done():
            turn.cancel()
            await asyncio.gather(turn, return_exceptions=True)
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
