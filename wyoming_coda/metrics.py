"""One metrics registry per server: Prometheus collectors (exported on `/metrics`) plus the
bounded samples behind the percentiles of `/api/analytics` and `VoiceManager.get_analytics()`."""

from __future__ import annotations

import statistics
from collections import Counter as Tally
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

SAMPLES_KEPT = 1000
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
# stage names, all measured in seconds
STAGES = {
    "vad_end_of_speech": "audio received -> VAD / end-of-turn signals the end of speech",
    "stt_final": "audio-stop -> final transcript",
    "llm_first_token": "turn start -> first LLM token",
    "llm_first_sentence": "turn start -> first complete LLM sentence",
    "tts_first_audio": "turn start -> first synthesized audio",
    "voice_to_voice": "end of speech -> first answer audio",
    "turn_done": "turn start -> end of the answer",
    "answer_bounded": "turn start -> the answer cut at its length bound (bounded answers only)",
}
QUALITY = ("level_dbfs", "clipping_ratio", "snr_db", "speech_ratio")


@dataclass
class Analytics:
    """The spec's analytics (`total_conversations`, `average_latency_ms`, `vram_usage`,
    `audio_quality`) plus percentiles per stage and the counters behind them."""

    total_conversations: int
    active_conversations: int
    total_turns: int
    average_latency_ms: float | None
    latency_ms: dict[str, dict[str, float]]
    routes: dict[str, int]
    tool_calls: dict[str, int]
    errors: dict[str, int]
    interruptions: int
    connections: int
    vram_usage: dict[str, Any]
    audio_quality: dict[str, float | None]
    models: dict[str, str]
    mode: str
    llm: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Metrics:
    """Counters, gauges and latency histograms of one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._latency = Histogram("coda_stage_latency_seconds", "Latency per pipeline stage", ["stage"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._engine_step = Histogram("coda_engine_step_seconds", "One batched model step (all rows)",
                                      ["engine"], buckets=LATENCY_BUCKETS, registry=r)
        self._rows = Histogram("coda_engine_step_rows", "Rows executed per batched step", ["engine"],
                               buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self._conversations = Counter("coda_conversations", "Conversations started", registry=r)
        self._active = Gauge("coda_conversations_active", "Conversations open now", registry=r)
        self._turns = Counter("coda_turns", "Conversation turns answered", registry=r)
        self._tool_calls = Counter("coda_tool_calls", "Tool calls by result", ["result"], registry=r)
        self._errors = Counter("coda_errors", "Errors by kind", ["kind"], registry=r)
        self._interruptions = Counter("coda_interruptions", "Answers interrupted by the user", registry=r)
        self._moshi_spoken = Counter("coda_moshi_spoken_answers",
                                     "Pipeline answers spoken in Moshi's own voice by coda-tts", registry=r)
        self._late_steps = Counter("coda_duplex_late_steps",
                                   "Duplex steps slower than moshi.target_latency_ms", registry=r)
        self._routes = Counter("coda_routes", "Turns by route (adaptive mode)", ["route"], registry=r)
        self._refused = Counter("coda_refused_connections", "Clients refused by the allow-list (--allow)",
                                ["port"], registry=r)
        self._ends = Counter("coda_end_of_turn", "Spoken commands the server ended, by reason", ["reason"],
                             registry=r)
        self._connections = Gauge("coda_connections", "Open client connections", ["kind"], registry=r)
        self._occupancy = Gauge("coda_batch_occupancy", "Engine rows in use / capacity", ["engine"], registry=r)
        self._queue = Gauge("coda_queue_depth", "Streams waiting for an engine row", ["engine"], registry=r)
        self._vram = Gauge("coda_vram_bytes", "Accelerator memory per component", ["component", "kind"],
                           registry=r)
        self._rss = Gauge("coda_process_rss_bytes", "Resident memory of the server process", registry=r)
        self._prompt_tokens = Counter("coda_llm_prompt_tokens", "Prompt tokens of LLM turns (last round)",
                                      registry=r)
        self._cached_tokens = Counter("coda_llm_cached_prompt_tokens",
                                      "Prompt tokens the LLM server's prompt cache held", registry=r)
        self._quality = Gauge("coda_audio_quality", "Mean input audio indicator over recent utterances",
                              ["indicator"], registry=r)
        self.conversations = 0
        self.active = 0
        self.turns = 0
        self.interruptions = 0
        self.connections = 0
        self.routes: Tally[str] = Tally()
        self.prompt: dict[str, Any] = {}
        self.tool_calls: Tally[str] = Tally()
        self.errors: Tally[str] = Tally()
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=SAMPLES_KEPT))
        self._quality_samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=SAMPLES_KEPT))

    # -- events -------------------------------------------------------------------------------
    def observe(self, stage: str, seconds: float) -> None:
        self._latency.labels(stage).observe(seconds)
        self._samples[stage].append(seconds)

    def engine_step(self, engine: str, seconds: float, rows: int) -> None:
        """One batched step of an engine (the Moshi frame step among them)."""
        self._engine_step.labels(engine).observe(seconds)
        self._rows.labels(engine).observe(rows)
        self._samples[f"{engine}_step"].append(seconds)

    def conversation_started(self) -> None:
        self.conversations += 1
        self.active += 1
        self._conversations.inc()
        self._active.set(self.active)

    def conversation_ended(self) -> None:
        self.active -= 1
        self._active.set(self.active)

    def turn(self) -> None:
        self.turns += 1
        self._turns.inc()

    def route(self, name: str) -> None:
        self.routes[name] += 1
        self._routes.labels(name).inc()

    def tool_call(self, ok: bool) -> None:
        result = "ok" if ok else "error"
        self.tool_calls[result] += 1
        self._tool_calls.labels(result).inc()

    def error(self, kind: str) -> None:
        self.errors[kind] += 1
        self._errors.labels(kind).inc()

    def interruption(self) -> None:
        self.interruptions += 1
        self._interruptions.inc()

    def moshi_spoken_answer(self) -> None:
        self._moshi_spoken.inc()

    def late_step(self) -> None:
        self._late_steps.inc()

    def refused(self, port: str) -> None:
        self._refused.labels(port).inc()

    def end_of_turn(self, reason: str) -> None:
        self._ends.labels(reason).inc()

    def llm_prompt(self, tokens: int, cached: int | None) -> None:
        """The prompt of an LLM turn's last round: its size, and how much of it the LLM server's
        prompt cache held (None: the server does not say)."""
        self._prompt_tokens.inc(tokens)
        self.prompt = {"last_tokens": tokens, "last_cached_tokens": cached,
                       "turns": self.prompt.get("turns", 0) + 1,
                       "tokens": self.prompt.get("tokens", 0) + tokens,
                       "cached_tokens": self.prompt.get("cached_tokens", 0) + (cached or 0)}
        if cached is not None:
            self._cached_tokens.inc(cached)

    def prompt_report(self) -> dict[str, Any]:
        """Prompt tokens per LLM turn and the share the prompt cache held."""
        if not self.prompt:
            return {}
        return {**self.prompt, "mean_tokens": round(self.prompt["tokens"] / self.prompt["turns"]),
                "cache_hit": round(self.prompt["cached_tokens"] / max(1, self.prompt["tokens"]), 3)}

    def connection(self, kind: str, delta: int) -> None:
        self.connections += delta
        self._connections.labels(kind).inc(delta)

    def audio_quality(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._quality_samples[name].append(value)
            self._quality.labels(name).set(statistics.fmean(self._quality_samples[name]))

    # -- state refreshed before each export ----------------------------------------------------
    def engines(self, occupancy: dict[str, float], waiting: dict[str, int]) -> None:
        for engine, value in occupancy.items():
            self._occupancy.labels(engine).set(value)
        for engine, value in waiting.items():
            self._queue.labels(engine).set(value)

    def memory(self, report: dict[str, Any]) -> None:
        for component, figures in report["components"].items():
            for kind, value in figures.items():
                if kind.endswith("_bytes") and value is not None:
                    self._vram.labels(component, kind.removesuffix("_bytes")).set(value)
        self._rss.set(report["rss_bytes"])

    # -- reading -------------------------------------------------------------------------------
    def latency_ms(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, samples in self._samples.items():
            ordered = sorted(samples)
            out[stage] = {
                "count": len(ordered),
                "mean": statistics.fmean(ordered) * 1000,
                "p50": ordered[len(ordered) // 2] * 1000,
                "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000,
            }
        return out

    def quality(self) -> dict[str, float | None]:
        return {n: statistics.fmean(self._quality_samples[n]) if self._quality_samples[n] else None for n in QUALITY}

    def prometheus(self) -> bytes:
        return generate_latest(self.registry)
