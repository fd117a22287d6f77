"""Zeroconf advertisement of the Wyoming service (`_wyoming._tcp.local.`) and the server's
stable identity.

python-zeroconf is used directly: wyoming's helper cannot unregister and fails on hosts
without a route to the multicast group. The TXT properties tell a Coda server apart from
other Wyoming servers (the Home Assistant integration filters on `coda`).
"""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

import ifaddr
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from .. import __version__

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_wyoming._tcp.local."


def host_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this host (loopback when there are none)."""
    found = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and not str(ip.ip).startswith("127.")
    ]
    return found or ["127.0.0.1"]


def server_id(data_dir: Path) -> str:
    """This server's stable id (kept in the data directory): clients recognise a server by it
    when its address changes."""
    path = data_dir / "server_id"
    if path.is_file():
        return path.read_text(encoding="ascii").strip()
    new_id = uuid.uuid4().hex
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(new_id + "\n", encoding="ascii")
    return new_id


class Advertiser:
    """Registers the service on start, unregisters it on close."""

    def __init__(
        self, name: str, port: int, http_port: int | None, mode: str, server_id: str, host: str | None = None
    ) -> None:
        self.name = name
        self.host = host
        addresses = [host] if host else host_addresses()
        properties = {"coda": "1", "id": server_id, "version": __version__, "mode": mode}
        if http_port:
            properties["http_port"] = str(http_port)
        self.info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(addr) for addr in addresses],
            port=port,
            properties=properties,
            server=f"{socket.gethostname().split('.')[0]}.local.",
        )
        self._zeroconf: AsyncZeroconf | None = None

    async def start(self) -> None:
        interfaces = [self.host] if self.host else None
        self._zeroconf = (
            AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            if interfaces
            else AsyncZeroconf(ip_version=IPVersion.V4Only)
        )
        # the first await queues the registration, the second waits for probing/announcing
        await (await self._zeroconf.async_register_service(self.info))
        _LOGGER.info("Zeroconf: advertising %s on port %s", self.info.name, self.info.port)

    async def close(self) -> None:
        if self._zeroconf is None:
            return
        await (await self._zeroconf.async_unregister_service(self.info))
        await self._zeroconf.async_close()
        self._zeroconf = None
        _LOGGER.info("Zeroconf: unregistered %s", self.info.name)
