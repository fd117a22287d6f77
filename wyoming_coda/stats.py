"""In-process counters and latency samples behind `VoiceManager.get_analytics()`."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

SAMPLES_KEPT = 1000


@dataclass
class Analytics:
    """The spec's analytics, plus latency percentiles per stage and the counters behind them."""

    total_conversations: int
    active_conversations: int
    total_turns: int
    average_latency_ms: float | None
    latency_ms: dict[str, dict[str, float]]
    routes: dict[str, int]
    tool_calls: dict[str, int]
    errors: dict[str, int]
    interruptions: int
    vram_usage: dict[str, Any]
    audio_quality: dict[str, float | None]
    models: dict[str, str]
    mode: str
    llm: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Stats:
    """Counters and bounded latency samples (seconds) per stage."""

    def __init__(self) -> None:
        self.conversations = 0
        self.turns = 0
        self.interruptions = 0
        self.routes: Counter[str] = Counter()
        self.tool_calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=SAMPLES_KEPT))
        self._quality: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=SAMPLES_KEPT))

    def observe(self, stage: str, seconds: float) -> None:
        self._latency[stage].append(seconds)

    def observe_quality(self, name: str, value: float) -> None:
        self._quality[name].append(value)

    def latency_ms(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, samples in self._latency.items():
            ordered = sorted(samples)
            out[stage] = {
                "count": len(ordered),
                "mean": statistics.fmean(ordered) * 1000,
                "p50": ordered[len(ordered) // 2] * 1000,
                "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000,
            }
        return out

    def quality(self) -> dict[str, float | None]:
        names = ("level_dbfs", "clipping_ratio", "speech_ratio")
        return {n: statistics.fmean(self._quality[n]) if self._quality[n] else None for n in names}
