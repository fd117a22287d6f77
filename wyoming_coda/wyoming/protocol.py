"""Reading Wyoming events defensively.

`wyoming.event.async_read_event` trusts the header: a bad JSON line ends the connection and a
header that claims a 4 GB payload is read into memory. Here every header is checked; what can
be answered (bad JSON, unknown shape) raises `RecoverableProtocolError` and the connection goes
on, what breaks the framing (oversized or negative lengths) raises `FatalProtocolError`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
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


# What each event the services take must carry: field -> (types, required). Checked before an
# event reaches its service, so a wrongly typed field is a `malformed-event` error, not a crash
# inside a service (or of a task it started).
_OPTIONAL_STR = ((str, type(None)), False)
_INT = ((int,), True)
_OPTIONAL_INT = ((int, type(None)), False)
_OPTIONAL_OBJECT = ((dict, type(None)), False)
Fields = Mapping[str, tuple[tuple[type, ...], bool]]
EVENT_FIELDS: dict[str, Fields] = {
    "transcribe": {"language": _OPTIONAL_STR, "name": _OPTIONAL_STR},
    "audio-start": {"rate": _INT, "width": _INT, "channels": _INT, "timestamp": _OPTIONAL_INT},
    "audio-chunk": {"rate": _INT, "width": _INT, "channels": _INT, "timestamp": _OPTIONAL_INT},
    "audio-stop": {"timestamp": _OPTIONAL_INT},
    "synthesize": {"text": ((str,), True), "voice": _OPTIONAL_OBJECT},
    "synthesize-start": {"voice": _OPTIONAL_OBJECT},
    "synthesize-chunk": {"text": ((str,), True)},
    "transcript": {"text": ((str,), True), "language": _OPTIONAL_STR, "context": _OPTIONAL_OBJECT},
    "coda-tool-result": {"id": ((str, int), True), "error": _OPTIONAL_STR},
}
_VOICE_FIELDS: Fields = {"name": _OPTIONAL_STR, "language": _OPTIONAL_STR, "speaker": _OPTIONAL_STR}


def _field_problems(data: dict[str, Any], fields: Fields, where: str) -> str | None:
    for name, (types, required) in fields.items():
        if name not in data:
            if required:
                return f"{where} needs '{name}'"
            continue
        value = data[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            return f"{where}: '{name}' must be {names}, got {type(value).__name__}"
    return None


def data_problem(event: Event) -> str | None:
    """What is wrong with the data of an event the services take, or None."""
    fields = EVENT_FIELDS.get(event.type)
    if fields is None:
        return None
    data = event.data or {}
    problem = _field_problems(data, fields, event.type)
    if problem is None and isinstance(data.get("voice"), dict):
        problem = _field_problems(data["voice"], _VOICE_FIELDS, f"{event.type}.voice")
    return problem
