"""The server process: Wyoming port, HTTP side port, zeroconf and the model store."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path
from urllib.parse import urlparse

from wyoming.info import Info
from wyoming.server import AsyncEventHandler, AsyncServer

from .access import AllowList, ClientCap, private_dir, server_token
from .config import VoiceConfig
from .duplex.session import DuplexParts
from .http import tls
from .http.app import HttpSide, SideParts
from .http.guard import SideAccess
from .models.registry import EngineRegistry
from .voiceapi.manager import VoiceManager
from .wyoming.asr import AsrService
from .wyoming.connection import Connection, Service
from .wyoming.discovery import Advertiser, host_addresses, server_id
from .wyoming.handle import HandleService
from .wyoming.handler import CodaEventHandler, RefusedConnection
from .wyoming.info import build_info
from .wyoming.tts import TtsService

_LOGGER = logging.getLogger(__name__)


class CodaServer:
    """Owns everything one server process runs; `run` blocks until `stop` is set."""

    def __init__(self, config: VoiceConfig, engines: EngineRegistry | None = None) -> None:
        """`engines`: the engine registry (default: the built-in engines)."""
        self.config = config
        self.manager = VoiceManager(config, engines)
        self.store = self.manager.store
        data_dir = private_dir(Path(config.server.data_dir))
        self.server_id = server_id(data_dir)
        self.token, token_file = server_token(config.server.http_token, config.server.http_token_file, data_dir)
        if token_file is not None:
            _LOGGER.info("The server's token is in %s (the Coda integration asks for it)", token_file)
        self.allow = AllowList(config.server.allow)
        self._clients = ClientCap(config.server.max_client_connections)  # open Wyoming connections per address

    def info(self) -> Info:
        return build_info(self.config, self.store, self.manager.speaker.voices())

    def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncEventHandler:
        """A new Wyoming client: served when its network is allowed, else closed at once."""
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        if not self.allow.allows(host):
            self.manager.metrics.refused("wyoming")
            return RefusedConnection(reader, writer)
        client = host or ""
        if not self._clients.take(client):
            self.manager.metrics.refused("wyoming-cap")
            _LOGGER.warning("Refused a connection from %s: it holds %d already", client, self._clients.limit)
            return RefusedConnection(reader, writer)
        return CodaEventHandler(reader, writer, services=self.make_services, info=self.info,
                                metrics=self.manager.metrics, idle_seconds=self.config.server.idle_connection_seconds,
                                on_close=lambda: self._clients.give_back(client))

    def make_services(self, connection: Connection) -> list[Service]:
        """The per-connection services of a new client, each with the parts it uses."""
        m = self.manager
        return [
            AsrService(connection, m.transcriber, m.metrics, m.events, self.config.stt.end_of_turn,
                       self.config.server.stream_idle_seconds, m.answer_clock),
            TtsService(connection, m.speaker, m.metrics, m.moshi.answers if m.moshi is not None else None,
                       self.config.server.stream_idle_seconds, m.answer_clock),
            HandleService(connection, m.turns, m.conversations, self.config.integration.conversation_timeout,
                          self.token, m.answer_clock),
        ]

    def side_parts(self) -> SideParts:
        """What the HTTP side port serves, duplex sessions included."""
        m = self.manager
        server = self.config.server
        duplex = DuplexParts(m.store, m.transcriber, m.turns, m.conversations, m.homes, m.timers, m.metrics,
                             m.events, self.config.moshi.target_latency_ms, server.row_wait_seconds,
                             server.stream_idle_seconds)
        return SideParts(m.store, m.analytics, m.metrics, m.events, m.homes, m.memory, duplex,
                         self.config.integration.websocket_events)

    def side_access(self, https_port: int | None) -> SideAccess:
        """The side port's access rules: the token, and the names browsers may reach it by."""
        server = self.config.server
        hostname = socket.gethostname()
        names = {*host_addresses(), hostname, hostname.split(".")[0] + ".local", socket.getfqdn(),
                 *(h for h in (server.http_host, server.zeroconf_host) if h and h not in ("0.0.0.0", "::"))}
        return SideAccess.build(self.token, names, server.http_port, https_port, server.allowed_origins,
                                server.allowed_hosts, server.metrics_public, self.allow, server.max_client_connections)

    def _https(self) -> tuple[int, ssl.SSLContext] | None:
        """The HTTPS port and its TLS context, when a certificate is given or self-signed."""
        server = self.config.server
        if server.http_cert and server.http_key:
            cert, key = Path(server.http_cert), Path(server.http_key)
        elif server.http_self_signed:
            cert, key = tls.self_signed(Path(server.data_dir), host_addresses())
        else:
            return None
        context = tls.server_context(cert, key)
        _LOGGER.info("TLS certificate %s, SHA-256 fingerprint %s", cert, tls.fingerprint(cert))
        return server.https_port, context

    async def run(self, stop: asyncio.Event) -> None:
        server_config = self.config.server
        await asyncio.to_thread(Path(server_config.data_dir).mkdir, parents=True, exist_ok=True)
        wyoming = AsyncServer.from_uri(server_config.uri)
        https = await asyncio.to_thread(self._https)
        http = (
            HttpSide(self.side_parts(), self.server_id, server_config.http_host, server_config.http_port,
                     self.side_access(https[0] if https else None), https)
            if server_config.http_port or https
            else None
        )
        advertiser = None
        if server_config.zeroconf:
            advertiser = Advertiser(
                server_config.zeroconf,
                port=urlparse(server_config.uri).port or 0,
                http_port=server_config.http_port or None,
                mode=self.config.mode,
                server_id=self.server_id,
                host=server_config.zeroconf_host,
            )
        await self.manager.initialize(wait=False)
        await wyoming.start(self._connection)
        try:
            if http is not None:
                await http.start()
            if advertiser is not None:
                await advertiser.start()
            _LOGGER.info("Ready: Wyoming on %s (mode %s)", server_config.uri, self.config.mode)
            await stop.wait()
        finally:
            _LOGGER.info("Stopping")
            if advertiser is not None:
                await advertiser.close()
            await wyoming.stop()
            if http is not None:
                await http.close()
            await self.manager.close()
        _LOGGER.info("Stopped")
