"""The duplex session's wire vocabulary (docs/duplex.md): message kinds, the client's control
messages (parsed and validated here, in one place) and the server's, each a typed class.

Every message is one binary WebSocket message: a kind byte, then the payload (the layout of
Kyutai's own server, with JSON where a structure is needed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
FORMATS = ("opus", "pcm", "f32")


class Kind(IntEnum):
    """The first byte of every message."""

    HANDSHAKE = 0  # server → client, JSON
    AUDIO = 1  # both ways: Ogg/Opus pages, or 24 kHz mono PCM (s16le / float32le)
    TEXT = 2  # server → client: UTF-8 piece of Moshi's inner monologue
    CONTROL = 3  # both ways, JSON
    METADATA = 4  # server → client, JSON per step
    ERROR = 5  # server → client, JSON
    PING = 6  # both ways, echoed back as is
    USER_TEXT = 7  # server → client: UTF-8 piece of the user's words


def pack(kind: Kind, payload: bytes) -> bytes:
    """One message: the kind byte, then the payload."""
    return bytes([kind]) + payload


class MessageError(ValueError):
    """A client message that breaks the protocol (sent back as a `malformed-message` error)."""


# -- client → server control ---------------------------------------------------------------------


@dataclass(frozen=True)
class Close:
    """{"action": "close"}: the client ends the session."""


@dataclass(frozen=True)
class AskText:
    """{"action": "text", "text"}: typed words, answered by the LLM in Moshi's voice."""

    text: str


ClientControl = Close | AskText


def parse_control(payload: bytes) -> ClientControl:
    """The client's control message; raises MessageError with what is wrong."""
    try:
        control = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        control = None
    if not isinstance(control, dict):
        raise MessageError("control payload must be a JSON object")
    action = control.get("action")
    if action == "close":
        return Close()
    if action == "text":
        text = control.get("text")
        if not isinstance(text, str) or not text.strip():
            raise MessageError('a text control needs a non-empty "text"')
        return AskText(text.strip())
    raise MessageError(f"unknown control action {action!r}")


# -- server → client -----------------------------------------------------------------------------


class ServerMessage:
    """A JSON message of the server; `KIND` is its kind byte."""

    KIND: ClassVar[Kind]

    def fields(self) -> dict[str, Any]:
        return dict(vars(self))  # the fields of the dataclass

    def encode(self) -> bytes:
        return pack(self.KIND, json.dumps(self.fields()).encode())


@dataclass(frozen=True)
class Handshake(ServerMessage):
    """The first message: the session's audio geometry, voices and linked Home Assistant."""

    KIND = Kind.HANDSHAKE
    version: int
    sample_rate: int
    frame_size: int
    format: str
    session: str
    voice: str
    voices: list[str]
    home: str | None


@dataclass(frozen=True)
class Metadata(ServerMessage):
    """One model step."""

    KIND = Kind.METADATA
    frame: int
    step_ms: float
    late: bool
    written: bool
    muted: bool
    user_speaking: bool


@dataclass(frozen=True)
class ErrorMessage(ServerMessage):
    KIND = Kind.ERROR
    code: str
    text: str


class ServerEvent(ServerMessage):
    """A control message of the server: {"event": NAME, ...fields}."""

    KIND = Kind.CONTROL
    EVENT: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        return {"event": self.EVENT, **super().fields()}


@dataclass(frozen=True)
class Interruption(ServerEvent):
    """The user talks over the assistant: its audio is held back."""

    EVENT = "interruption"


@dataclass(frozen=True)
class Resume(ServerEvent):
    """The user stopped: the assistant's audio goes out again."""

    EVENT = "resume"


@dataclass(frozen=True)
class LlmTurn(ServerEvent):
    """The LLM answers `text`, with the tools of `home` (None: no Home Assistant linked)."""

    EVENT = "llm_turn"
    text: str
    home: str | None


@dataclass(frozen=True)
class ToolCallEvent(ServerEvent):
    EVENT = "tool_call"
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResultEvent(ServerEvent):
    EVENT = "tool_result"
    name: str
    result: Any
    error: str | None


@dataclass(frozen=True)
class LlmDone(ServerEvent):
    EVENT = "llm_done"
    text: str
    error: str | None


@dataclass(frozen=True)
class TimerRang(ServerEvent):
    """A server timer of this session ended."""

    EVENT = "timer"
    name: str
