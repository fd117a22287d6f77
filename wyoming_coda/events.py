"""Voice events for subscribers (the events WebSocket, tests): conversation_start/end,
transcript, response_generated, tool_call, interruption, error, timer. A slow subscriber loses
events; it never blocks the voice path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

SUBSCRIBER_QUEUE = 256


class EventBus:
    """Fan-out of voice events to any number of subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event_type: str, **data: Any) -> None:
        event = {"event_type": event_type, "timestamp": time.time(), "data": data}
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
