"""Voice events for subscribers (the events WebSocket, tests): conversation_start/end,
transcript (partial and final), response_generated, audio_chunk, tool_call, interruption,
error, route, memory, personality, timer. A slow subscriber loses events; it never blocks the
voice path. Schema: docs/events.md."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

AUDIO_KEY = "_audio"  # s16le bytes of an audio_chunk, sent only to subscribers that ask

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

    def publish_audio(self, conversation_id: str, direction: str, pcm: np.ndarray, **extra: Any) -> None:
        """An audio_chunk event: metadata, with the audio itself kept for subscribers that ask."""
        if not self._subscribers:
            return
        level = float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0
        self.publish(
            "audio_chunk", conversation_id=conversation_id, direction=direction, samples=int(pcm.size),
            sample_rate=24000, level_dbfs=round(20 * float(np.log10(max(level, 1e-9))), 1), **extra,
            **{AUDIO_KEY: (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()},
        )

    def publish(self, event_type: str, **data: Any) -> None:
        event = {"event_type": event_type, "timestamp": time.time(), "data": data}
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
