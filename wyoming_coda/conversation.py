"""Conversation state, prompt assembly and the adaptive router."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from .llm.base import Message
from .memory import Memory
from .personality import Personality

MAX_HISTORY_MESSAGES = 20


@dataclass
class Conversation:
    """One conversation: who, in which language, and its recent messages."""

    id: str
    user_id: str = "default"
    language: str | None = None
    history: list[Message] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    turns: int = 0
    idle_timeout: float | None = None  # seconds without a turn before the conversation ends
    last_active: float = field(default_factory=time.monotonic)

    def idle(self, now: float) -> bool:
        return self.idle_timeout is not None and now - self.last_active > self.idle_timeout

    def messages(self, system: str, user_text: str) -> list[Message]:
        """System prompt, recent history, the new user message."""
        return [
            {"role": "system", "content": system},
            *self.history[-MAX_HISTORY_MESSAGES:],
            {"role": "user", "content": user_text},
        ]

    def add_turn(self, user_text: str, answer: str) -> None:
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer}]
        del self.history[:-MAX_HISTORY_MESSAGES]
        self.turns += 1


def system_prompt(
    personality: Personality, extra: list[str], language: str | None, memories: list[Memory]
) -> str:
    """Stable parts first (personality, instructions), volatile parts last (memories, time), so
    the LLM server's prompt cache keeps the prefix between turns."""
    parts = [personality.prompt(), *[e.strip() for e in extra if e and e.strip()]]
    if language:
        parts.append(f"Reply in the user's language ({language}).")
    if memories:
        parts.append("What you know about the user:\n" + "\n".join(f"- {m.text}" for m in memories))
    parts.append(f"Current local time: {datetime.now().astimezone():%A %d %B %Y, %H:%M}.")
    return "\n\n".join(parts)


# Adaptive routing -----------------------------------------------------------------------------

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

    name: str  # "llm" (full: tools, memory), "fast" (short answer, no tools) or "fallback"
    reason: str


def route_turn(text: str, llm_healthy: bool, speech_saturated: bool) -> Route:
    """Adaptive mode: device commands and real questions to the LLM with tools; short chit-chat
    to the fast path; a known-down LLM to the fallback (an immediate spoken apology)."""
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
        return Route("fast", "short chit-chat")
    return Route("llm", "open request")
