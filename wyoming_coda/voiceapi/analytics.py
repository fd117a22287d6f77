"""The analytics provider: the spec's `get_analytics()` answer (counters, latency percentiles,
memory per component, audio quality, model states, LLM health and reachability) and the gauges
refreshed before each export."""

from __future__ import annotations

import asyncio
import logging
import time

from ..llm.base import LLMBackend, LLMError
from ..metrics import Analytics, Metrics
from ..models.store import ModelStore
from ..turn.conversation import Conversations
from ..turn.routing import LLMHealth

_LOGGER = logging.getLogger(__name__)

LLM_CHECK_SECONDS = 15.0  # analytics ask the LLM server whether it answers at most this often


class AnalyticsProvider:
    """Reads the metrics registry, the model store, the conversations and the LLM's health."""

    def __init__(
        self, mode: str, metrics: Metrics, store: ModelStore, conversations: Conversations, llm: LLMBackend,
        health: LLMHealth,
    ) -> None:
        self.mode = mode
        self.metrics = metrics
        self.store = store
        self.conversations = conversations
        self.llm = llm
        self.health = health
        self._reachable: bool | None = None
        self._checked_at = float("-inf")
        self._check: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        """Update the gauges that are read, not counted (engine occupancy, memory)."""
        occupancy = self.store.occupancy()
        self.metrics.engines(
            {kind: active / capacity for kind, (active, capacity, _) in occupancy.items()},
            {kind: waiting for kind, (_, _, waiting) in occupancy.items()},
        )
        self.metrics.memory(self.store.memory_report())

    async def _check_llm(self) -> None:
        try:
            await asyncio.wait_for(self.llm.check(), LLM_CHECK_SECONDS)
            self._reachable = True
        except (LLMError, TimeoutError) as err:
            _LOGGER.debug("LLM check failed: %s", err)
            self._reachable = False

    def _llm_reachable(self) -> bool | None:
        """Whether the LLM server answered its last check (None before the first one), and
        start a new check in the background when that one is old."""
        now = time.monotonic()
        if now - self._checked_at > LLM_CHECK_SECONDS and (self._check is None or self._check.done()):
            self._checked_at = now
            self._check = asyncio.create_task(self._check_llm(), name="llm check")
        return self._reachable

    async def analytics(self) -> Analytics:
        self.conversations.end_idle()
        self.refresh()
        latency = self.metrics.latency_ms()
        headline = latency.get("voice_to_voice") or latency.get("tts_first_audio") or latency.get("llm_first_sentence")
        return Analytics(
            total_conversations=self.metrics.conversations,
            active_conversations=len(self.conversations),
            total_turns=self.metrics.turns,
            average_latency_ms=headline["mean"] if headline else None,
            latency_ms=latency,
            routes=dict(self.metrics.routes),
            tool_calls=dict(self.metrics.tool_calls),
            errors=dict(self.metrics.errors),
            interruptions=self.metrics.interruptions,
            connections=self.metrics.connections,
            vram_usage=self.store.memory_report(),
            audio_quality=self.metrics.quality(),
            models={kind: slot.state for kind, slot in self.store.slots.items()},
            mode=self.mode,
            llm={"provider": self.llm.name, "model": self.llm.model, "healthy": self.health.healthy,
                 "reachable": self._llm_reachable(), "prompt": self.metrics.prompt_report()},
        )

    async def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
            await asyncio.gather(self._check, return_exceptions=True)
