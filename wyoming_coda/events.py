"""Voice events for subscribers (the events WebSocket, tests): every event a typed class, turned
into its wire form in one place (`BusEvent.data`). A slow subscriber loses events; it never
blocks the voice path. Schema: docs/events.md."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .audio import SAMPLE_RATE

AUDIO_KEY = "_audio"  # s16le bytes of an audio_chunk, sent only to subscribers that ask

SUBSCRIBER_QUEUE = 256


class BusEvent:
    """One voice event: `TYPE` is its `event_type`, its fields are its `data`."""

    TYPE: ClassVar[str]
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()  # optional fields left out when unset

    def data(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None or k not in self.OMIT_WHEN_NONE}


@dataclass(frozen=True)
class ConversationStart(BusEvent):
    TYPE = "conversation_start"
    conversation_id: str
    user_id: str


@dataclass(frozen=True)
class ConversationEnd(BusEvent):
    TYPE = "conversation_end"
    conversation_id: str


@dataclass(frozen=True)
class TranscriptEvent(BusEvent):
    """Words of the user or the assistant: pieces as they come, or a final transcript."""

    TYPE = "transcript"
    OMIT_WHEN_NONE = frozenset({"conversation_id", "language"})
    speaker: str  # user | assistant
    text: str
    final: bool
    conversation_id: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class RouteChosen(BusEvent):
    TYPE = "route"
    conversation_id: str
    route: str
    reason: str


@dataclass(frozen=True)
class ToolCallMade(BusEvent):
    TYPE = "tool_call"
    conversation_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ResponseGenerated(BusEvent):
    TYPE = "response_generated"
    conversation_id: str
    text: str
    route: str
    language: str | None
    voice: str | None
    latency_ms: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class SynthesisStarted(BusEvent):
    """A TTS row was taken."""

    TYPE = "synthesis"
    voice: str
    language: str | None


@dataclass(frozen=True)
class AudioChunkEvent(BusEvent):
    TYPE = "audio_chunk"
    OMIT_WHEN_NONE = frozenset({"muted"})
    conversation_id: str
    direction: str
    samples: int
    sample_rate: int
    level_dbfs: float
    audio: bytes  # sent as AUDIO_KEY, to subscribers that ask
    muted: bool | None = None

    def data(self) -> dict[str, Any]:
        data = super().data()
        data[AUDIO_KEY] = data.pop("audio")
        return data


@dataclass(frozen=True)
class UserInterrupted(BusEvent):
    TYPE = "interruption"
    conversation_id: str


@dataclass(frozen=True)
class ErrorEvent(BusEvent):
    TYPE = "error"
    conversation_id: str
    code: str
    text: str


@dataclass(frozen=True)
class MemoryLearned(BusEvent):
    TYPE = "memory"
    conversation_id: str
    learned: list[str]


@dataclass(frozen=True)
class MemoryForgotten(BusEvent):
    TYPE = "memory_forgotten"
    user_id: str
    memory_id: int | None  # None: everything about the user
    facts: int


@dataclass(frozen=True)
class PersonalityAdapted(BusEvent):
    TYPE = "personality"
    conversation_id: str
    verbosity: str
    tone: str


@dataclass(frozen=True)
class TimerRang(BusEvent):
    TYPE = "timer"
    name: str
    conversation_id: str | None


@dataclass(frozen=True)
class MetricsSnapshot(BusEvent):
    """The `/api/analytics` object."""

    TYPE = "metrics"
    analytics: dict[str, Any]

    def data(self) -> dict[str, Any]:
        return dict(self.analytics)


class EventBus:
    """Fan-out of voice events to any number of subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish_audio(self, conversation_id: str, direction: str, pcm: np.ndarray, muted: bool | None = None) -> None:
        """An audio_chunk event: metadata, with the audio itself kept for subscribers that ask."""
        if not self._subscribers:
            return
        level = float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0
        self.publish(AudioChunkEvent(
            conversation_id, direction, int(pcm.size), SAMPLE_RATE, round(20 * float(np.log10(max(level, 1e-9))), 1),
            (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes(), muted))

    def publish(self, event: BusEvent) -> None:
        message = {"event_type": event.TYPE, "timestamp": time.time(), "data": event.data()}
        for queue in self._subscribers:
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.dropped += 1
