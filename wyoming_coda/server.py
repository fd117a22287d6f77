"""The server process: Wyoming port, HTTP side port, zeroconf and the model store."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from urllib.parse import urlparse

from wyoming.info import Info
from wyoming.server import AsyncEventHandler, AsyncServer

from . import tls
from .access import AllowList
from .checkpoints import list_voices
from .config import VoiceConfig
from .discovery import Advertiser, host_addresses, server_id
from .engines.pocket import PocketSpeech
from .handler import CodaEventHandler, RefusedConnection
from .http import HttpSide
from .info import build_info
from .manager import VoiceManager
from .services import Connection, Service
from .services.asr import AsrService
from .services.handle import HandleService
from .services.tts import TtsService

_LOGGER = logging.getLogger(__name__)


class CodaServer:
    """Owns everything one server process runs; `run` blocks until `stop` is set."""

    def __init__(self, config: VoiceConfig) -> None:
        self.config = config
        self.manager = VoiceManager(config)
        self.store = self.manager.store
        self.server_id = server_id(Path(config.server.data_dir))
        self.allow = AllowList(config.server.allow)
        self._voices: list[str] | None = None

    def voices(self) -> list[str]:
        """TTS voices: the configured one until the TTS model is loaded, then the repository's."""
        engine = self.store.loaded_tts()
        if engine is None:
            return [self.config.tts.voice]
        if self._voices is None:
            listed = engine.voices() if isinstance(engine, PocketSpeech) else list_voices(self.config.tts.voices,
                                                                                         engine.voice_suffix)
            self._voices = sorted(set(listed) | {self.config.tts.voice})
        return self._voices

    def info(self) -> Info:
        return build_info(self.config, self.store, self.voices())

    def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncEventHandler:
        """A new Wyoming client: served when its network is allowed, else closed at once."""
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        if not self.allow.allows(host):
            self.manager.metrics.refused("wyoming")
            return RefusedConnection(reader, writer)
        return CodaEventHandler(reader, writer, services=self.make_services, info=self.info,
                                metrics=self.manager.metrics)

    def make_services(self, connection: Connection) -> list[Service]:
        """The per-connection services of a new client."""
        return [AsrService(connection, self.manager), TtsService(connection, self.manager),
                HandleService(connection, self.manager)]

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
            HttpSide(self.manager, self.server_id, server_config.http_host, server_config.http_port,
                     server_config.http_token, https, self.allow)
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
