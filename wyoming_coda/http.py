"""The HTTP side port (aiohttp): health, analytics JSON, Prometheus metrics.

With a token configured (`--http-token`), everything but `/healthz` needs
`Authorization: Bearer <token>`: analytics carry transcripts' metadata that must not leak on a LAN.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .server import CodaServer

_LOGGER = logging.getLogger(__name__)

SERVER_KEY: web.AppKey[CodaServer] = web.AppKey("coda_server")
OPEN_PATHS = frozenset({"/healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _token_middleware(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}"

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="coda"'})
        return await handler(request)

    return check


async def healthz(request: web.Request) -> web.Response:
    """200 when every model is loaded, 503 while loading or after a failed load."""
    server = request.app[SERVER_KEY]
    store = server.manager.store
    models = {kind: {"state": slot.state, "source": slot.source, "error": slot.error}
              for kind, slot in store.slots.items()}
    return web.json_response(
        {"ready": store.ready, "mode": server.config.mode, "device": store.device, "models": models},
        status=200 if store.ready else 503,
    )


async def analytics(request: web.Request) -> web.Response:
    """`VoiceManager.get_analytics()` as JSON."""
    data = await request.app[SERVER_KEY].manager.get_analytics()
    return web.json_response(data.as_dict())


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the server's registry."""
    manager = request.app[SERVER_KEY].manager
    manager.refresh_metrics()
    return web.Response(body=manager.metrics.prometheus(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(server: CodaServer, token: str | None) -> web.Application:
    app = web.Application(middlewares=[_token_middleware(token)] if token else [])
    app[SERVER_KEY] = server
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/analytics", analytics)
    app.router.add_get("/metrics", metrics)
    return app


class HttpSide:
    """Runs the aiohttp app on the side port."""

    def __init__(self, server: CodaServer, host: str, port: int, token: str | None) -> None:
        self.host, self.port = host, port
        self._runner = web.AppRunner(create_app(server, token), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        _LOGGER.info("HTTP side port on http://%s:%s", self.host, self.port)

    async def close(self) -> None:
        await self._runner.cleanup()
