"""The allow-list (`--allow`): clients from other networks are refused on the Wyoming port (closed
before a byte is read) and on the HTTP side port (403), counted; the others are served. The test
client connects from 127.0.0.2, another loopback address, to stand for a foreign network."""

from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
import pytest
from wyoming.info import Describe

from tests.serverproc import ServerProcess, exchange
from wyoming_coda.access import AllowList


def test_networks() -> None:
    default = AllowList(["127.0.0.0/8", "192.168.0.0/16", "fe80::/10"])
    assert default.allows("192.168.1.20") and default.allows("::ffff:127.0.0.1") and default.allows("fe80::1%eth0")
    assert not default.allows("8.8.8.8") and not default.allows("2001:db8::1") and not default.allows("bogus")
    assert default.allows(None)  # a unix socket


def _refused_count(server: ServerProcess, port: str) -> float:
    _, body = server.http_fetch("/metrics")
    match = re.search(rf'^coda_refused_connections_total{{port="{port}"}} (\S+)$', body.decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_clients_outside_the_allowed_networks_are_refused(start_server) -> None:
    server = start_server("--allow", "127.0.0.1/32")

    def foreign_wyoming() -> bytes:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            try:
                sock.sendall(b'{"type": "describe"}\n')
                return sock.recv(1024)
            except ConnectionResetError:
                return b""

    assert await asyncio.to_thread(foreign_wyoming) == b""  # closed without an answer
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/healthz") as response:
            assert response.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"http://127.0.0.1:{server.http_port}/api/events")

    info = await exchange(server, [Describe().event()], until="info")  # 127.0.0.1: served
    assert info[-1].data["asr"]
    assert _refused_count(server, "wyoming") == 1 and _refused_count(server, "http") == 2
    assert "Refused a client at 127.0.0.2" in server.log()
