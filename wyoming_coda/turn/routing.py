"""Where a turn goes: the one router of pipeline turns and duplex sessions (the mode's rule,
adaptive routing by the words, the LLM's recent health, the speech engines' load)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Protocol

from ..config import turn_modes

LLM_DOWN_SECONDS = 30.0  # adaptive mode routes around an LLM that failed this recently

_COMMAND = re.compile(
    r"\b(turn|switch|set|open|close|lock|unlock|dim|brighten|start|stop|pause|resume|play|"
    r"light|lights|lamp|thermostat|temperature|heating|timer|alarm|volume|door|garage|blinds|"
    r"cover|fan|vacuum|scene|remind|schedule|weather|calendar|remember|forget)\b",
    re.I,
)
_QUESTION = re.compile(r"\b(why|how|explain|compare|what|which|when|where|who|calculate)\b", re.I)
CHITCHAT_MAX_WORDS = 6


@dataclass(frozen=True)
class Route:
    """Where a turn goes and why."""

    name: str  # "llm" (full: tools, memory), "moshi", "fast" (short answer, no tools) or "fallback"
    reason: str


def route_turn(text: str, llm_healthy: bool, speech_saturated: bool, moshi: bool = False) -> Route:
    """Adaptive mode: device commands and real questions to the LLM with tools; short chit-chat
    to Moshi when it is loaded, else to the fast path; a known-down LLM to the fallback (an
    immediate spoken apology)."""
    if not llm_healthy:
        return Route("fallback", "the LLM failed moments ago")
    words = len(text.split())
    if _COMMAND.search(text):
        return Route("llm", "device command or task")
    if speech_saturated:
        return Route("fast", "speech engines saturated")
    if _QUESTION.search(text) and words > CHITCHAT_MAX_WORDS:
        return Route("llm", "complex question")
    if words <= CHITCHAT_MAX_WORDS:
        return Route("moshi" if moshi else "fast", "short chit-chat")
    return Route("llm", "open request")


class LLMHealth:
    """When the LLM last failed a turn."""

    def __init__(self) -> None:
        self._failed_at = float("-inf")

    def failed(self) -> None:
        self._failed_at = time.monotonic()

    @property
    def healthy(self) -> bool:
        return time.monotonic() - self._failed_at > LLM_DOWN_SECONDS


class Saturation(Protocol):
    """Whether an engine has no free row (the model store)."""

    def saturated(self, kind: str) -> bool: ...


class Mode(Protocol):
    """The configured processing mode (the voice config)."""

    mode: str


class Router:
    """The routing rules of this server: pipeline turns follow the mode; duplex sessions send
    what needs knowledge or action to the LLM and leave the rest to Moshi."""

    def __init__(
        self, config: Mode, health: LLMHealth, engines: Saturation, moshi: bool, llm_enabled: bool = True
    ) -> None:
        self.config = config  # read at each turn: the mode may change at run time
        self.llm_enabled = llm_enabled  # moshi_only may run without any LLM
        self.health = health
        self.engines = engines
        self.moshi = moshi  # whether Moshi is loaded for pipeline turns

    def modes(self) -> list[str]:
        """The modes a turn may ask for here."""
        return turn_modes(self.moshi, self.llm_enabled)

    def pipeline(self, text: str, client_tools: bool = False, mode: str | None = None) -> Route:
        """Where a pipeline turn with this text goes in `mode` (one of `modes()`; None: the
        configured one). In moshi_only mode a device command that comes with the client's tools
        (Home Assistant's) goes to the LLM, when there is one: Moshi cannot act, and must not seem to."""
        mode = mode or self.config.mode
        if mode == "moshi_only":
            if client_tools and self.llm_enabled and _COMMAND.search(text):
                return Route("llm", "device command in moshi_only mode")
            return Route("moshi", "moshi_only mode")
        if mode == "hybrid":
            return Route("llm", "hybrid mode")
        return route_turn(text, self.health.healthy, self.engines.saturated("tts"), moshi=self.moshi)

    @staticmethod
    def duplex(text: str, moshi_triggers: bool) -> Route:
        """Moshi for chit-chat, the LLM for what needs knowledge or action (with a MoshiRAG
        checkpoint, Moshi's own trigger decides instead)."""
        if moshi_triggers:
            return Route("moshi", "Moshi's retrieval trigger decides")
        route = route_turn(text, llm_healthy=True, speech_saturated=False)
        return route if route.name == "llm" else Route("moshi", route.reason)
