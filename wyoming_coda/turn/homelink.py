"""Links from Home Assistant: the Coda integration holds a WebSocket (`/api/home` on the HTTP
side port) through which the server asks, for a turn that has no Home Assistant request behind
it (a duplex session), for the tools and the system prompt of Home Assistant's LLM API, and
runs those tools' calls inside Home Assistant — with the same exposure rules as the
conversation agent. See docs/protocol.md ("Home link").

JSON text messages (an answer carries its request's type and id):
    client → server  {"type": "hello", "name", "entry_id", "tools"}         once, first (tools: lends them)
    server → client  {"type": "welcome", "duplex": bool}                     serves duplex sessions?
    server → client  {"type": "context", "id", "language"}
    client → server  {"type": "context", "id", "tools": [...], "prompt"}     or {..., "error"}
    server → client  {"type": "tool_call", "id", "call_id", "name", "arguments"}
    client → server  {"type": "tool_call", "id", "result"}                   or {..., "error"}
    server → client  {"type": "local", "id", "text", "language"}            Home Assistant's own agent first
    client → server  {"type": "local", "id", "speech"}                       handled; no `speech`: not handled
    server → client  {"type": "vocabulary", "id"}                            on linking, then every 10 minutes
    client → server  {"type": "vocabulary", "id", "names", "areas"}          exposed devices' names, areas
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..listen.vocabulary import Vocabulary
from ..llm.base import ToolCall
from .tools import RemoteTools, ToolError

_LOGGER = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0  # a tool call or a context request Home Assistant did not answer
CONTEXT_TIMEOUT = 5.0
VOCABULARY_REFRESH = 600.0  # seconds between two readings of a home's device and area names
NO_HOME_PROMPT = ("No Home Assistant is connected to this conversation: you cannot see or control any device. "
                  "When asked to, say plainly that home control is not connected.")

Send = Callable[[dict[str, Any]], Awaitable[None]]


class LinkClosedError(ToolError):
    """Home Assistant went away before it answered."""


@dataclass(frozen=True)
class HomeContext:
    """What one Home Assistant gives a turn: its tools (calls answered through the link) and
    its system prompt (instructions and the exposed entities)."""

    name: str
    tools: RemoteTools
    prompt: str


class HomeLink:
    """One connected Home Assistant (one Coda config entry)."""

    def __init__(self, name: str, entry_id: str, send: Send, tools: bool = True) -> None:
        """`tools`: whether this home lends duplex sessions its tools (else it only gives its
        words for speech recognition)."""
        self.name = name
        self.entry_id = entry_id
        self.tools = tools
        self._send = send
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.closed = False

    async def _request(self, message: dict[str, Any], seconds: float) -> dict[str, Any]:
        if self.closed:
            raise LinkClosedError(f"Home Assistant ({self.name}) is not connected")
        request_id = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send({**message, "id": request_id})
            async with asyncio.timeout(seconds):
                answer = await future
        except TimeoutError:
            raise ToolError(f"Home Assistant ({self.name}) did not answer in {seconds:.0f} s") from None
        finally:
            self._pending.pop(request_id, None)
        if answer.get("error"):
            raise ToolError(str(answer["error"]))
        return answer

    async def context(self, language: str | None) -> HomeContext:
        """Home Assistant's tools and prompt for a turn in `language`."""
        answer = await self._request({"type": "context", "language": language}, CONTEXT_TIMEOUT)
        tools = answer.get("tools")
        if not (isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)):
            raise ToolError("Home Assistant's context has no list of tools")
        return HomeContext(self.name, RemoteTools(tools, self.call_tool), str(answer.get("prompt") or ""))

    async def local(self, text: str, language: str | None) -> str | None:
        """Home Assistant's own agent on `text` (local first): its spoken answer when it handled
        the turn, None when the turn is for the LLM (not handled, local first off, no answer)."""
        try:
            answer = await self._request({"type": "local", "text": text, "language": language}, CONTEXT_TIMEOUT)
        except ToolError as err:
            _LOGGER.debug("Home Assistant's agent did not answer (%s): %s", self.name, err)
            return None
        speech = answer.get("speech")
        return speech if isinstance(speech, str) and speech.strip() else None

    async def keep_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Read this home's device and area names into `vocabulary` now and every
        VOCABULARY_REFRESH seconds, until the link closes; they leave with the link."""
        try:
            while not self.closed:
                try:
                    answer = await self._request({"type": "vocabulary"}, CONTEXT_TIMEOUT)
                    kept = vocabulary.update(self, answer.get("names"), answer.get("areas"))
                    _LOGGER.debug("%s: %d device names for speech recognition", self.name, kept)
                except LinkClosedError:
                    break
                except ToolError as err:  # an older integration, or a slow one: no words this time
                    _LOGGER.debug("no vocabulary from %s: %s", self.name, err)
                await asyncio.sleep(VOCABULARY_REFRESH)
        finally:
            vocabulary.forget(self)

    async def call_tool(self, call: ToolCall) -> Any:
        answer = await self._request(
            {"type": "tool_call", "call_id": call.id, "name": call.name, "arguments": call.arguments},
            REQUEST_TIMEOUT,
        )
        return answer.get("result")

    def answered(self, message: dict[str, Any]) -> bool:
        """Take Home Assistant's answer to a request; False when no request has that id."""
        future = self._pending.get(str(message.get("id")))
        if future is None:
            return False
        if not future.done():
            future.set_result(message)
        return True

    def close(self) -> None:
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkClosedError(f"Home Assistant ({self.name}) disconnected"))
        self._pending.clear()


class HomeLinks:
    """The Home Assistants linked to this server; `preferred` (a name or entry id, from
    `integration.duplex_home_assistant`) picks the one that serves duplex sessions, else the
    one linked first."""

    def __init__(self, preferred: str | None = None) -> None:
        self.preferred = preferred
        self._links: list[HomeLink] = []
        self.vocabulary = Vocabulary()  # the linked homes' device and area names, for STT

    def add(self, link: HomeLink) -> None:
        self._links.append(link)
        _LOGGER.info("Home Assistant linked: %s", link.name)

    def remove(self, link: HomeLink) -> None:
        link.close()
        if link in self._links:
            self._links.remove(link)
            _LOGGER.info("Home Assistant unlinked: %s", link.name)

    def for_duplex(self) -> HomeLink | None:
        """The Home Assistant whose tools duplex sessions use, if one that lends them is linked."""
        lending = [link for link in self._links if link.tools]
        if self.preferred:
            return next((link for link in lending if self.preferred in (link.name, link.entry_id)), None)
        return lending[0] if lending else None

    def names(self) -> list[str]:
        return [link.name for link in self._links]
