"""Zeroconf: the server advertises `_wyoming._tcp.local.` on 127.0.0.1 only, with Coda's TXT
properties, and unregisters on shutdown (seen by a browser in this process)."""

from __future__ import annotations

import asyncio

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from wyoming_coda.wyoming.discovery import SERVICE_TYPE


async def test_advertised_and_unregistered(start_server) -> None:
    changes: list[tuple[str, ServiceStateChange]] = []
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    browser = AsyncServiceBrowser(
        zc.zeroconf, SERVICE_TYPE,
        handlers=[lambda zeroconf, service_type, name, state_change: changes.append((name, state_change))],
    )
    try:
        proc = start_server("--zeroconf", "coda-test", "--zeroconf-host", "127.0.0.1")
        name = f"coda-test.{SERVICE_TYPE}"
        for _ in range(100):
            if (name, ServiceStateChange.Added) in changes:
                break
            await asyncio.sleep(0.05)
        assert (name, ServiceStateChange.Added) in changes
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        assert await info.async_request(zc.zeroconf, 3000)
        assert info.port == proc.port
        assert info.parsed_addresses() == ["127.0.0.1"]
        props = {k.decode(): v.decode() for k, v in info.properties.items()}
        assert props["coda"] == "1" and props["mode"] == "hybrid"
        assert props["id"] == proc.http_get("/healthz")[1]["server_id"] == proc.server_id
        assert props["http_port"] == str(proc.http_port)

        assert proc.terminate() == 0
        for _ in range(100):
            if (name, ServiceStateChange.Removed) in changes:
                break
            await asyncio.sleep(0.05)
        assert (name, ServiceStateChange.Removed) in changes
        assert "Zeroconf: unregistered" in proc.log()
    finally:
        await browser.async_cancel()
        await zc.async_close()
