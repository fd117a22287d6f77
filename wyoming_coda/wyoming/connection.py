"""Per-connection Wyoming services (asr, tts, handle), created for each client connection.

A service sees its connection only through `Connection` (write an event, send an error), and
the voice system only through the parts the server hands it (transcriber, speaker, turn runner,
metrics, events)."""

from __future__ import annotations

from typing import Protocol

from wyoming.event import Event


class Connection(Protocol):
    """What a service may do with its client connection."""

    async def write_event(self, event: Event) -> None:
        """Send an event (safe from several tasks at once)."""

    async def send_error(self, text: str, code: str) -> None:
        """Send a Wyoming `error` event (ignored when the client is gone)."""


class Service(Protocol):
    """A per-connection service (asr, tts, handle)."""

    def accepts(self, event_type: str) -> bool:
        """True when this service handles events of this type."""

    async def handle(self, event: Event) -> None:
        """Handle one event (answers go through the connection)."""

    async def close(self) -> None:
        """Stop any work in progress (client gone or server stopping)."""
