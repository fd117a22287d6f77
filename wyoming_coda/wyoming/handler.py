"""One Wyoming connection: reads events defensively and routes them to the services.

Describe and ping are answered here; every other event goes to the first service that
accepts its type (asr, tts, handle). Unknown or malformed events get an `error` event and the
connection goes on; an exception inside a service becomes an `error` event too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler

from ..aio import IdleBound
from ..metrics import Metrics
from .connection import Connection, Service
from .protocol import FatalProtocolError, RecoverableProtocolError, data_problem, read_event

_LOGGER = logging.getLogger(__name__)

ServiceFactory = Callable[[Connection], list[Service]]


class CodaEventHandler(AsyncEventHandler):
    """Routes the events of one client connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        services: ServiceFactory,
        info: Callable[[], Info],
        metrics: Metrics,
        idle_seconds: float = 600.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """`idle_seconds`: a connection that neither sends nor receives an event this long is
        closed; `on_close`: called once the connection is over."""
        super().__init__(reader, writer)
        self.services = services(self)
        self._info = info
        self._write_lock = asyncio.Lock()
        self._metrics = metrics
        self._metrics.connection("wyoming", +1)
        self._active = IdleBound(idle_seconds)
        self._on_close = on_close

    async def write_event(self, event: Event) -> None:
        """Send an event; services writing from several tasks never interleave bytes."""
        async with self._write_lock:
            await super().write_event(event)
        self._active.touch()

    async def send_error(self, text: str, code: str) -> None:
        """Send a Wyoming `error` event, ignoring a client that is already gone."""
        try:
            await self.write_event(Error(text=text, code=code).event())
        except (ConnectionError, RuntimeError):
            _LOGGER.debug("Client gone before error %s could be sent", code)

    async def run(self) -> None:
        """Read events until the client leaves, the server stops or the framing breaks."""
        self._is_running = True
        watchdog = asyncio.create_task(self._close_when_idle(), name="wyoming idle bound")
        try:
            while self._is_running:
                try:
                    event = await read_event(self.reader)
                    self._active.touch()
                    if event is None or not await self.handle_event(event):
                        break
                except RecoverableProtocolError as err:
                    _LOGGER.warning("Malformed event: %s", err)
                    await self.send_error(str(err), err.code)
                    continue
                except FatalProtocolError as err:
                    _LOGGER.warning("Closing connection: %s", err)
                    await self.send_error(str(err), err.code)
                    break
                except ConnectionError:
                    break
        finally:
            watchdog.cancel()
            await self.disconnect()
            self.writer.close()
            if self._on_close is not None:
                self._on_close()

    async def _close_when_idle(self) -> None:
        await self._active.expired()
        _LOGGER.info("Closing a Wyoming connection idle for %g s", self._active.seconds)
        self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self._info().event())
            return True
        if Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
            return True
        service = next((s for s in self.services if s.accepts(event.type)), None)
        if service is not None and (problem := data_problem(event)) is not None:
            _LOGGER.warning("Malformed event: %s", problem)
            await self.send_error(problem, "malformed-event")
            return True
        if service is None:
            _LOGGER.debug("Unknown event type: %s", event.type)
            await self.send_error(f"unknown event type '{event.type}'", "unknown-event")
            return True
        try:
            await service.handle(event)
        except ConnectionError:
            raise
        except Exception as err:  # one bad request must not end the connection
            _LOGGER.exception("Error handling %s", event.type)
            await self.send_error(f"{event.type}: {err}", "internal-error")
        return True

    async def disconnect(self) -> None:
        self._metrics.connection("wyoming", -1)
        await asyncio.gather(*(service.close() for service in self.services))


class RefusedConnection(AsyncEventHandler):
    """A client outside the allowed networks: closed before a byte is read."""

    async def handle_event(self, event: Event) -> bool:
        return False

    async def run(self) -> None:
        self.writer.close()
