"""The HTTP side port (aiohttp): health now; analytics, metrics and WebSockets plug in here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import CodaServer

_LOGGER = logging.getLogger(__name__)

SERVER_KEY: web.AppKey[CodaServer] = web.AppKey("coda_server")


async def healthz(request: web.Request) -> web.Response:
    """200 when every model is loaded, 503 while loading or after a failed load."""
    server = request.app[SERVER_KEY]
    models = {
        kind: {"state": slot.state, "source": slot.source, "error": slot.error}
        for kind, slot in server.store.slots.items()
    }
    ready = server.store.ready
    return web.json_response(
        {"ready": ready, "mode": server.config.mode, "device": server.store.device, "models": models},
        status=200 if ready else 503,
    )


def create_app(server: CodaServer) -> web.Application:
    app = web.Application()
    app[SERVER_KEY] = server
    app.router.add_get("/healthz", healthz)
    return app


class HttpSide:
    """Runs the aiohttp app on the side port."""

    def __init__(self, server: CodaServer, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._runner = web.AppRunner(create_app(server), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        _LOGGER.info("HTTP side port on http://%s:%s", self.host, self.port)

    async def close(self) -> None:
        await self._runner.cleanup()
