"""The HTTP side port (aiohttp): health, analytics JSON, Prometheus metrics, the events
WebSocket, duplex Moshi sessions, the home link of the Coda integration and the memory it
lets Home Assistant see and erase.

Every route but `/healthz`, the talk page's file and `/api/challenge` needs the server's token
(`Authorization: Bearer <token>`, or `?token=` on a WebSocket): the side port controls the home
and holds what was said. Browsers get in only from the server's own pages (guard.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import ssl
import weakref
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST

from ..access import is_user_id, proof
from ..duplex.session import DuplexParts, duplex_ws
from ..events import AUDIO_KEY, EventBus, MemoryForgotten, MetricsSnapshot
from ..metrics import Metrics
from ..models.store import ModelStore
from ..turn.homelink import HomeLink, HomeLinks
from ..turn.memory import MemoryStore
from ..voiceapi.analytics import AnalyticsProvider
from .guard import SideAccess, SocketSlot, guard_middleware

_LOGGER = logging.getLogger(__name__)

PARTS_KEY: web.AppKey[SideParts] = web.AppKey("coda_parts")
SERVER_ID_KEY: web.AppKey[str] = web.AppKey("coda_server_id")
SOCKETS_KEY: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("websockets")
SHUTDOWN_SECONDS = 5.0  # longest a request may hold up the server's exit
HELLO_SECONDS = 10.0  # a home link must say who it is within this time
ACCESS_KEY: web.AppKey[SideAccess] = web.AppKey("coda_access")
MIN_METRICS_INTERVAL, MAX_METRICS_INTERVAL = 0.25, 3600.0  # seconds between snapshots, when asked for
MAX_SUBSCRIBERS = 32  # event subscribers at once
MAX_NONCE = 128
MAX_HEARD_BODY = 16 * 1024  # bytes of a `/api/heard` request
MAX_SENTENCES = 16  # sentences one request may have read
MAX_SENTENCE = 300  # characters of each, and of the transcript

@dataclass(frozen=True)
class SideParts:
    """What the side port serves: health, analytics and metrics, events, the home link, memory
    and duplex sessions."""

    store: ModelStore
    analytics: AnalyticsProvider
    metrics: Metrics
    events: EventBus
    homes: HomeLinks
    memory: MemoryStore | None
    duplex: DuplexParts
    websocket_events: bool  # /api/events is served


async def healthz(request: web.Request) -> web.Response:
    """200 when every model is loaded, 503 while loading or after a failed load. Without the
    token: only that and the server id; with it, each model's state and error."""
    health = request.app[PARTS_KEY].store.health()
    body = {**health, "server_id": request.app[SERVER_ID_KEY]}
    if not request.app[ACCESS_KEY].has_token(request):
        body = {"ready": health["ready"], "server_id": request.app[SERVER_ID_KEY]}
    return web.json_response(body, status=200 if health["ready"] else 503)


async def challenge(request: web.Request) -> web.Response:
    """`GET /api/challenge?nonce=N`: the proof that this server holds the token its clients know
    (HMAC of the nonce and the server id), which a client checks without sending the token."""
    nonce = request.query.get("nonce", "")
    if not 16 <= len(nonce) <= MAX_NONCE or not nonce.isalnum():
        raise web.HTTPBadRequest(text=f"nonce must be 16 to {MAX_NONCE} letters or digits")
    server_id = request.app[SERVER_ID_KEY]
    return web.json_response({"server_id": server_id,
                              "proof": proof(request.app[ACCESS_KEY].token, "challenge", nonce, server_id)})


async def analytics(request: web.Request) -> web.Response:
    """`VoiceManager.get_analytics()` as JSON."""
    data = await request.app[PARTS_KEY].analytics.analytics()
    return web.json_response(data.as_dict())


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the server's registry."""
    parts = request.app[PARTS_KEY]
    parts.analytics.refresh()
    return web.Response(body=parts.metrics.prometheus(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def events(request: web.Request) -> web.WebSocketResponse:
    """`/api/events`: every voice event as a JSON message, plus a `metrics` snapshot every
    `metrics_interval` seconds (default 5, 0 = none). `?audio=1` adds base64 audio to
    `audio_chunk` events. Each subscriber has its own bounded queue: a slow one loses events."""
    parts = request.app[PARTS_KEY]
    include_audio = request.query.get("audio") == "1"
    try:
        interval = float(request.query.get("metrics_interval", "5"))
    except ValueError:
        interval = math.nan
    if not math.isfinite(interval) or interval < 0:
        raise web.HTTPBadRequest(text="metrics_interval must be a number of seconds (0: no snapshots)")
    interval = min(max(interval, MIN_METRICS_INTERVAL), MAX_METRICS_INTERVAL) if interval else 0.0
    if parts.events.subscribers >= MAX_SUBSCRIBERS:
        raise web.HTTPServiceUnavailable(text=f"at most {MAX_SUBSCRIBERS} event subscribers at once")
    with SocketSlot(request.app[ACCESS_KEY], request):
        return await _events(request, parts, interval, include_audio)


async def _events(request: web.Request, parts: SideParts, interval: float, include_audio: bool) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    request.app[SOCKETS_KEY].add(ws)
    queue = parts.events.subscribe()

    async def snapshots() -> None:
        while interval > 0:
            await asyncio.sleep(interval)
            parts.events.publish(MetricsSnapshot((await parts.analytics.analytics()).as_dict()))

    ticker = asyncio.create_task(snapshots())
    reader = asyncio.create_task(ws.receive())  # ends when the client closes
    try:
        while not ws.closed:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            await ws.send_json(_public(getter.result(), include_audio))
    except ConnectionResetError:
        pass
    finally:
        parts.events.unsubscribe(queue)
        for task in (ticker, reader):
            task.cancel()
        await asyncio.gather(ticker, reader, return_exceptions=True)
    return ws


def _public(event: dict[str, Any], include_audio: bool) -> dict[str, Any]:
    data = event["data"]
    if AUDIO_KEY not in data:
        return event
    data = {k: v for k, v in data.items() if k != AUDIO_KEY}
    if include_audio:
        data["audio_b64"] = base64.b64encode(event["data"][AUDIO_KEY]).decode()
    return {**event, "data": data}


async def talk_page(request: web.Request) -> web.Response:
    """The browser talk page: microphone in, Moshi out, both transcripts, latency."""
    page = resources.files("wyoming_coda").joinpath("web/talk.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html")


async def duplex(request: web.Request) -> web.WebSocketResponse:
    with SocketSlot(request.app[ACCESS_KEY], request):
        return await duplex_ws(request, request.app[PARTS_KEY].duplex, request.app[SOCKETS_KEY].add)


async def home(request: web.Request) -> web.WebSocketResponse:
    """`/api/home`: the Coda integration's link (turn/homelink.py): it says hello, then answers the
    server's context requests and tool calls for as long as it stays connected."""
    with SocketSlot(request.app[ACCESS_KEY], request):
        return await _home(request, request.app[PARTS_KEY])


async def _home(request: web.Request, parts: SideParts) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    request.app[SOCKETS_KEY].add(ws)
    try:
        hello = await ws.receive_json(timeout=HELLO_SECONDS)
    except (TimeoutError, TypeError, ValueError):
        hello = None
    if not (isinstance(hello, dict) and hello.get("type") == "hello" and hello.get("name")):
        await ws.send_json({"type": "error", "text": "the first message must be {\"type\": \"hello\", \"name\": ...}"})
        await ws.close()
        return ws
    link = HomeLink(str(hello["name"]), str(hello.get("entry_id") or ""), ws.send_json, hello.get("tools") is not False)
    parts.homes.add(link)
    words: asyncio.Task[None] | None = None
    try:
        await ws.send_json({"type": "welcome", "duplex": parts.homes.for_duplex() is link})
        words = asyncio.create_task(link.keep_vocabulary(parts.homes.vocabulary), name="home vocabulary")
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                data = None
            if not (isinstance(data, dict) and link.answered(data)):
                await ws.send_json({"type": "error", "text": f"not an answer to a request: {message.data[:200]}"})
    except ConnectionResetError:
        pass
    finally:
        parts.homes.remove(link)
        if words is not None:
            words.cancel()
            await asyncio.gather(words, return_exceptions=True)
    return ws


def _json_error(status: type[web.HTTPException], error: str, code: str) -> web.HTTPException:
    """An HTTP error whose body is the JSON the integration reads: {"error", "code"}."""
    return status(text=json.dumps({"error": error, "code": code}), content_type="application/json")


async def heard(request: web.Request) -> web.Response:
    """`POST /api/heard` {"heard", "sentences", "language"}: how likely each sentence is for the
    recent utterance the STT engine transcribed as `heard`, beside `heard` itself (`logprob`
    over `tokens`): a client whose grammar the transcript failed picks the sentence the audio
    supports. 404 when no such utterance is kept, 501 when the engine cannot read
    sentences against audio."""
    too_large = (request.content_length or 0) > MAX_HEARD_BODY
    if too_large or len(body := await request.content.read(MAX_HEARD_BODY + 1)) > MAX_HEARD_BODY:
        return web.json_response({"error": f"at most {MAX_HEARD_BODY} bytes", "code": "too_large"}, status=413)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    problem = _heard_problem(data) if isinstance(data, dict) else "the body must be a JSON object"
    if problem is not None:
        raise _json_error(web.HTTPBadRequest, problem, "bad_request")
    scorer = request.app[PARTS_KEY].store.sentence_scorer()
    if scorer is None:
        raise _json_error(web.HTTPNotImplemented, "this server's speech recogniser cannot read sentences against audio",
                          "not_supported")
    scores = await scorer.score_sentences(data["heard"], data["sentences"], data.get("language", "en"))
    if scores is None:
        raise _json_error(web.HTTPNotFound, "no recent utterance was heard as that", "not_heard")
    heard_score, *sentence_scores = [score._asdict() for score in scores]
    return web.json_response({"heard": heard_score, "sentences": sentence_scores})


def _heard_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a `/api/heard` request, or None."""
    sentences, language = data.get("sentences"), data.get("language", "en")
    if not _short_text(data.get("heard")):
        return f"heard must be the transcript, 1 to {MAX_SENTENCE} characters"
    if not (isinstance(sentences, list) and 1 <= len(sentences) <= MAX_SENTENCES
            and all(_short_text(s) for s in sentences)):
        return f"sentences must be 1 to {MAX_SENTENCES} strings of 1 to {MAX_SENTENCE} characters"
    if not (isinstance(language, str) and language.isalpha() and len(language) <= 8):
        return "language must be a language code such as en"
    return None


def _short_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_SENTENCE


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not is_user_id(user_id):
        raise _json_error(web.HTTPBadRequest, "a user id is 1 to 128 letters, digits or ._@:-", "bad_user_id")
    return user_id


def _memory(request: web.Request) -> MemoryStore:
    store = request.app[PARTS_KEY].memory
    if store is None:
        raise _json_error(web.HTTPNotFound, "memory is off on this server (integration.memory_enabled)", "memory_off")
    return store


async def memory_users(request: web.Request) -> web.Response:
    """`GET /api/memory`: whose memories are stored (facts and conversation turns per user)."""
    return web.json_response({"users": await _memory(request).users()})


async def memory_of(request: web.Request) -> web.Response:
    """`GET /api/memory/{user_id}`: one user's facts (and how many conversation turns are kept)."""
    data = await _memory(request).export(_user_id(request))
    return web.json_response({**data, "turns": len(data["turns"])})


async def forget(request: web.Request) -> web.Response:
    """`DELETE /api/memory/{user_id}[/{memory_id}]`: forget one fact, or everything about the
    user (facts and conversation turns)."""
    user_id, memory = _user_id(request), request.match_info.get("memory_id")
    memory_id = None if memory is None else int(memory)
    forgotten = await _memory(request).forget(user_id, memory_id)
    if memory_id is not None and not forgotten:
        return web.json_response({"error": f"no memory {memory_id} of {user_id}", "code": "unknown_memory"},
                                 status=404)
    request.app[PARTS_KEY].events.publish(MemoryForgotten(user_id, memory_id, forgotten))
    return web.json_response({"forgotten": forgotten})


async def _close_websockets(app: web.Application) -> None:
    """On shutdown: tell every WebSocket client the server is going away, so none holds it up."""
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS_KEY]
    await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
                           for ws in list(sockets)), return_exceptions=True)


def create_app(parts: SideParts, server_id: str, access: SideAccess) -> web.Application:
    app = web.Application(middlewares=[guard_middleware(access, parts.metrics)])
    app[PARTS_KEY] = parts
    app[SERVER_ID_KEY] = server_id
    app[ACCESS_KEY] = access
    app[SOCKETS_KEY] = weakref.WeakSet()
    app.on_shutdown.append(_close_websockets)  # type: ignore[arg-type]  # aiosignal 1.4's generics vs aiohttp 3.11
    app.router.add_get("/", talk_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/challenge", challenge)
    app.router.add_get("/api/analytics", analytics)
    if parts.websocket_events:
        app.router.add_get("/api/events", events)
    app.router.add_get("/api/duplex", duplex)
    app.router.add_get("/api/home", home)
    app.router.add_post("/api/heard", heard)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/memory", memory_users)
    app.router.add_get("/api/memory/{user_id}", memory_of)
    app.router.add_delete("/api/memory/{user_id}", forget)
    app.router.add_delete(r"/api/memory/{user_id}/{memory_id:\d+}", forget)
    return app


class HttpSide:
    """Runs the aiohttp app on the side port, and on the HTTPS port when TLS is configured
    (browsers give a page the microphone only on https or localhost)."""

    def __init__(
        self, parts: SideParts, server_id: str, host: str, port: int, access: SideAccess,
        https: tuple[int, ssl.SSLContext] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.https = https
        self._runner = web.AppRunner(create_app(parts, server_id, access), access_log=None,
                                     shutdown_timeout=SHUTDOWN_SECONDS)

    async def start(self) -> None:
        await self._runner.setup()
        if self.port:
            await web.TCPSite(self._runner, self.host, self.port).start()
            _LOGGER.info("HTTP side port on http://%s:%s", self.host, self.port)
        if self.https is not None:
            port, context = self.https
            await web.TCPSite(self._runner, self.host, port, ssl_context=context).start()
            _LOGGER.info("HTTPS side port on https://%s:%s", self.host, port)

    async def close(self) -> None:
        await self._runner.cleanup()
