"""Client of one Coda Voice server: the Wyoming port (describe, conversation turns with tool
calls) and the HTTP side port (health, analytics, the event stream, the home link)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from wyoming.asr import Transcript
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe, Info

from .const import CONNECT_TIMEOUT, HANDLE_PROGRAMS, TURN_EVENT_TIMEOUT

_LOGGER = logging.getLogger(__name__)

TOOL_CALL = "coda-tool-call"
TOOL_RESULT = "coda-tool-result"
HANDLED_CHUNK = "handled-chunk"
PROGRESS = "coda-progress"  # the turn is alive (the LLM reads or a tool runs); once with `say`


class CodaError(Exception):
    """The server could not be used."""


class CodaConnectionError(CodaError):
    """The server does not answer (or stopped answering)."""


class CodaAuthError(CodaError):
    """The HTTP side port refused the token."""


class CodaRequestError(CodaError):
    """The server understood the request and refused it (its JSON `error`)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class UnprovenServerError(CodaError):
    """The server at this address could not prove it holds the entry's token (an impostor, or
    another server that took the address)."""


def proof(token: str, *parts: str) -> str:
    """HMAC-SHA256 of `parts` under the token (the server checks the same): shows the token is
    held without sending it (docs/security.md)."""
    return hmac.new(token.encode(), "\n".join(parts).encode(), hashlib.sha256).hexdigest()


class NotCodaError(CodaError):
    """A Wyoming server answered, but it is not Coda Voice."""


@dataclass(frozen=True)
class ServerInfo:
    """What a server says about itself."""

    server_id: str
    version: str
    mode: str
    device: str
    device_control: bool = True  # turns can act on devices (not: moshi_only without an LLM)
    modes: tuple[str, ...] = ()  # the modes a conversation agent may ask for


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class TurnEnd:
    text: str
    handled: bool  # False: the server could not answer; `text` says why
    conversation_id: str | None
    refused: bool = False  # the server answered the request with an `error` event (`text`: why)


@dataclass(frozen=True)
class Holding:
    """The server's holding phrase: nothing is said yet this far into the turn."""

    text: str


TurnEvent = TextDelta | ToolCallRequest | Holding | TurnEnd


@dataclass(frozen=True)
class AudioScore:
    """How likely a text is for an utterance's audio (`POST /api/heard`): its log-probability
    over its tokens."""

    logprob: float
    tokens: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> AudioScore:
        return cls(float(data["logprob"]), max(1, int(data["tokens"])))

    @property
    def mean(self) -> float:
        """Log-probability per token."""
        return self.logprob / self.tokens


class CodaClient:
    """One server: `host:port` (Wyoming) and `host:http_port` (HTTP, optional bearer token)."""

    def __init__(
        self, session: aiohttp.ClientSession, host: str, port: int, http_port: int, token: str | None = None
    ) -> None:
        self.session = session
        self.host = host
        self.port = port
        self.http_port = http_port
        self.token = token or None

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def async_describe(self) -> Info:
        """The server's Wyoming `info`; NotCodaError when it has no Coda handle program."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT), AsyncTcpClient(self.host, self.port) as client:
                await client.write_event(Describe().event())
                while (event := await client.read_event()) is not None:
                    if Info.is_type(event.type):
                        info = Info.from_event(event)
                        break
                else:
                    raise CodaConnectionError(f"{self.host}:{self.port} closed the connection")
        except (OSError, TimeoutError) as err:
            raise CodaConnectionError(f"cannot reach {self.host}:{self.port}: {err or 'timeout'}") from err
        if not any(program.name in HANDLE_PROGRAMS for program in info.handle):
            raise NotCodaError(f"{self.host}:{self.port} is a Wyoming server without {HANDLE_PROGRAMS[0]}")
        return info

    async def _get(self, path: str, *, allow: tuple[int, ...] = ()) -> dict[str, Any]:
        return await self._request("GET", path, allow=allow)

    async def _request(self, method: str, path: str, *, allow: tuple[int, ...] = (),
                       body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A side-port JSON request (with a JSON `body`); statuses in `allow` are answered like
        successes (the server's JSON says what happened)."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT), self.session.request(
                method, f"{self.http_url}{path}", headers=self._headers(), json=body
            ) as response:
                if response.status == 401:
                    raise CodaAuthError(f"{self.http_url} refused the token")
                if response.status >= 400 and response.status not in allow:
                    raise CodaConnectionError(f"{self.http_url}{path}: HTTP {response.status}")
                data = await response.json()
                if response.status >= 400:
                    details = data if isinstance(data, dict) else {"error": str(data)}
                    raise CodaRequestError(str(details.get("error")), str(details.get("code") or response.status))
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as err:
            raise CodaConnectionError(f"cannot reach {self.http_url}: {err or 'timeout'}") from err
        if not isinstance(data, dict):
            raise NotCodaError(f"{self.http_url}{path} did not answer with a JSON object")
        return data

    async def async_server_info(self) -> ServerInfo:
        """Identity from `/healthz` (open, answered while models load) plus the version from
        `describe`. The token is not checked here: `async_analytics` does that."""
        info = await self.async_describe()
        health = await self._get("/healthz", allow=(503,))
        if "server_id" not in health:
            raise NotCodaError(f"{self.http_url}/healthz is not a Coda Voice health report")
        version = next((p.version for p in info.handle if p.name in HANDLE_PROGRAMS), None) or "unknown"
        mode = str(health.get("mode"))
        modes = health.get("modes")
        return ServerInfo(str(health["server_id"]), version, mode, str(health.get("device")),
                          health.get("device_control") is not False,
                          tuple(str(m) for m in modes) if isinstance(modes, list) else (mode,))

    async def async_analytics(self) -> dict[str, Any]:
        return await self._get("/api/analytics")

    async def async_read_against_audio(self, heard: str, sentences: list[str]) -> tuple[AudioScore, list[AudioScore]] | None:
        """How likely each sentence is for the recent utterance the server transcribed as
        `heard`, beside `heard` itself; None when the server kept no audio for it, its
        recogniser cannot tell or it cannot be reached."""
        try:
            scores = await self._request("POST", "/api/heard", allow=(404, 501),
                                         body={"heard": heard, "sentences": sentences, "language": "en"})
            return AudioScore.of(scores["heard"]), [AudioScore.of(score) for score in scores["sentences"]]
        except (CodaError, KeyError, TypeError, ValueError) as err:
            _LOGGER.debug("No sentences read against the audio of %r: %s", heard, err)
            return None

    async def async_memory_users(self) -> list[dict[str, Any]]:
        """Whose memories the server keeps, with their counts of facts and turns."""
        return list((await self._request("GET", "/api/memory", allow=(404,)))["users"])

    async def async_memories(self, user_id: str) -> dict[str, Any]:
        """One user's remembered facts (and how many conversation turns are kept)."""
        return await self._request("GET", f"/api/memory/{quote(user_id, safe='')}", allow=(404,))

    async def async_forget(self, user_id: str, memory_id: int | None = None) -> int:
        """Forget one fact of `user_id`, or everything about them; the number of facts erased."""
        path = f"/api/memory/{quote(user_id, safe='')}" + ("" if memory_id is None else f"/{memory_id}")
        return int((await self._request("DELETE", path, allow=(404,)))["forgotten"])

    @contextlib.asynccontextmanager
    async def _websocket(
        self, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket on the side port; connection errors as CodaError."""
        try:
            async with self.session.ws_connect(
                f"{self.http_url}{path}", params=params, headers=self._headers(), heartbeat=30,
                timeout=aiohttp.ClientWSTimeout(ws_close=CONNECT_TIMEOUT),
            ) as ws:
                yield ws
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 401:
                raise CodaAuthError(f"{self.http_url} refused the token") from err
            raise CodaConnectionError(str(err)) from err
        except aiohttp.ClientError as err:
            raise CodaConnectionError(str(err)) from err

    async def async_events(self, metrics_interval: int) -> AsyncIterator[dict[str, Any]]:
        """The server's event stream (`/api/events`) until it closes."""
        async with self._websocket("/api/events", {"metrics_interval": str(metrics_interval)}) as ws:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    yield message.json()

    async def async_prove_identity(self, server_id: str) -> None:
        """Raise UnprovenServerError unless the server here is `server_id` and proves it holds
        this client's token (a challenge: the token itself is never sent for it)."""
        if not self.token:
            raise UnprovenServerError(f"no token to check {self.http_url} against")
        nonce = secrets.token_hex(16)
        answer = await self._request("GET", f"/api/challenge?nonce={nonce}")
        expected = proof(self.token, "challenge", nonce, server_id)
        if answer.get("server_id") != server_id or not hmac.compare_digest(str(answer.get("proof")), expected):
            raise UnprovenServerError(f"{self.http_url} could not prove it is the Coda Voice server {server_id}")

    async def async_home_link(
        self, name: str, entry_id: str, server_id: str, answer: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        tools: bool = True,
    ) -> None:
        """Hold the home link (`/api/home`) until the server closes it: every request of the
        server (a turn's context, a tool call, the home's words) is answered with `answer`,
        concurrently; `tools`: whether talk-page sessions may use Home Assistant's tools. Only a
        server that proves it is `server_id` gets the link: it runs Home Assistant's tools."""
        await self.async_prove_identity(server_id)
        tasks: set[asyncio.Task[None]] = set()

        async def reply(ws: aiohttp.ClientWebSocketResponse, request: dict[str, Any]) -> None:
            response = await answer(request)
            with contextlib.suppress(ConnectionResetError):
                await ws.send_json({**response, "type": request.get("type"), "id": request.get("id")})

        async with self._websocket("/api/home") as ws:
            await ws.send_json({"type": "hello", "name": name, "entry_id": entry_id, "tools": tools})
            try:
                async for message in ws:
                    request = message.json() if message.type is aiohttp.WSMsgType.TEXT else None
                    if not isinstance(request, dict):
                        continue
                    if request.get("type") in ("welcome", "error"):
                        _LOGGER.debug("Home link of %s: %s", self.http_url, request)
                    else:
                        task = asyncio.create_task(reply(ws, request))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
            finally:
                for task in tasks:
                    task.cancel()

    def turn(self, text: str, language: str | None, context: dict[str, Any]) -> CodaTurn:
        """A conversation turn over the handle service (use as `async with`)."""
        return CodaTurn(self, text, language, context)


class CodaTurn:
    """One conversation turn on its own Wyoming connection: the answer streams back as text
    deltas; a tool call pauses the turn until `send_tool_result` answers it."""

    def __init__(self, client: CodaClient, text: str, language: str | None, context: dict[str, Any]) -> None:
        self._client = client
        if client.token:  # signed: the server gives a user's memory and profile only to its token
            stamp = str(time.time())
            context = {**context, "proof_time": stamp, "proof": proof(
                client.token, stamp, text, str(context.get("user_id") or ""), str(context.get("conversation_id") or ""))}
        self._request = Transcript(text=text, language=language, context=context)
        self._wyoming: AsyncTcpClient | None = None

    async def __aenter__(self) -> Self:
        wyoming = AsyncTcpClient(self._client.host, self._client.port)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await wyoming.connect()
            await wyoming.write_event(self._request.event())
        except (OSError, TimeoutError) as err:
            with contextlib.suppress(OSError):  # a connection already lost cannot be closed cleanly
                await wyoming.disconnect()
            raise CodaConnectionError(f"cannot reach {self._client.host}:{self._client.port}: {err}") from err
        self._wyoming = wyoming
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._wyoming is not None:
            with contextlib.suppress(OSError):
                await self._wyoming.disconnect()  # also cancels a turn still running on the server
            self._wyoming = None

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Server events until the next tool call or the end of the turn."""
        assert self._wyoming is not None, "use the turn as a context manager"
        while True:
            try:
                async with asyncio.timeout(TURN_EVENT_TIMEOUT):
                    event = await self._wyoming.read_event()
            except (OSError, TimeoutError) as err:
                raise CodaConnectionError(f"the server stopped answering: {err or 'timeout'}") from err
            if event is None:
                raise CodaConnectionError("the server closed the connection during the turn")
            if event.type == HANDLED_CHUNK:
                if text := (event.data or {}).get("text"):
                    yield TextDelta(str(text))
            elif event.type == PROGRESS:  # each event restarts the silence timeout above
                if say := (event.data or {}).get("say"):
                    yield Holding(str(say))
            elif event.type == TOOL_CALL:
                data = event.data or {}
                arguments = data.get("arguments")
                yield ToolCallRequest(str(data.get("id")), str(data.get("name")),
                                      arguments if isinstance(arguments, dict) else {})
                return
            elif Error.is_type(event.type):  # the server refused the request: the turn is over
                data = event.data or {}
                _LOGGER.warning("The server refused a turn: %s (%s)", data.get("text"), data.get("code"))
                yield TurnEnd(str(data.get("text") or ""), False, None, refused=True)
                return
            elif Handled.is_type(event.type) or NotHandled.is_type(event.type):
                context = (event.data or {}).get("context") or {}
                yield TurnEnd(str((event.data or {}).get("text") or ""), Handled.is_type(event.type),
                              context.get("conversation_id"))
                return

    async def send_tool_result(self, call_id: str, result: Any, error: str | None = None) -> None:
        assert self._wyoming is not None, "use the turn as a context manager"
        data: dict[str, Any] = {"id": call_id, "error": error} if error else {"id": call_id, "result": result}
        try:
            await self._wyoming.write_event(Event(TOOL_RESULT, data))
        except OSError as err:
            raise CodaConnectionError(f"the server stopped answering: {err}") from err
