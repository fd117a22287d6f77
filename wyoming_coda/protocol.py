"""Reading Wyoming events defensively.

`wyoming.event.async_read_event` trusts the header: a bad JSON line ends the connection and a
header that claims a 4 GB payload is read into memory. Here every header is checked; what can
be answered (bad JSON, unknown shape) raises `RecoverableProtocolError` and the connection goes
on, what breaks the framing (oversized or negative lengths) raises `FatalProtocolError`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event

MAX_DATA_BYTES = 1 << 20  # JSON data block of one event
MAX_PAYLOAD_BYTES = 16 << 20  # binary payload of one event (a long audio chunk is < 1 MB)


class ProtocolError(Exception):
    """An event that cannot be taken; `code` goes into the Wyoming `error` event."""

    code = "malformed-event"


class RecoverableProtocolError(ProtocolError):
    """The bad event was consumed whole; the connection can go on."""


class FatalProtocolError(ProtocolError):
    """The stream can no longer be framed; the connection must close."""


class PayloadTooLargeError(FatalProtocolError):
    """A header announces more bytes than the server accepts."""

    code = "payload-too-large"


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FatalProtocolError(f"{key} must be a non-negative integer, got {value!r}")
    if value > limit:
        raise PayloadTooLargeError(f"{key} {value} exceeds the limit of {limit} bytes")
    return value


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """Read one event; None at end of stream."""
    try:
        line = await reader.readline()
    except ValueError as err:  # header line longer than the stream limit
        raise FatalProtocolError(f"event header too long ({err})") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # connection closed in the middle of a header
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RecoverableProtocolError("event header is not valid JSON") from None
    if not isinstance(header, dict):
        raise RecoverableProtocolError("event header must be a JSON object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        data_bytes = await reader.readexactly(data_length) if data_length else b""
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    event_type = header.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise RecoverableProtocolError("event header has no 'type' string")
    data = header.get("data") or {}
    if data_bytes:
        try:
            extra = json.loads(data_bytes)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RecoverableProtocolError(f"data of '{event_type}' is not valid JSON") from None
        if not isinstance(extra, dict) or not isinstance(data, dict):
            raise RecoverableProtocolError(f"data of '{event_type}' must be a JSON object")
        data = {**data, **extra}
    if not isinstance(data, dict):
        raise RecoverableProtocolError(f"data of '{event_type}' must be a JSON object")
    return Event(type=event_type, data=data, payload=payload)
