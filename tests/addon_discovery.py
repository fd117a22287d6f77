"""What the add-on announces to the Supervisor (one payload per integration), shared by the
add-on's own test and the Home Assistant tests that feed it to both config flows."""

from __future__ import annotations

from typing import Any


def discovery_payloads(host: str, port: int, http_port: int, token: str | None = None) -> list[dict[str, Any]]:
    """Home Assistant's wyoming integration gets the Wyoming URI; the Coda integration gets the
    ports and the side port's token too (the Supervisor's discovery channel is trusted)."""
    coda: dict[str, Any] = {"host": host, "port": port, "http_port": http_port}
    if token:
        coda["token"] = token
    return [{"service": "wyoming", "config": {"uri": f"tcp://{host}:{port}"}},
            {"service": "coda", "config": coda}]
