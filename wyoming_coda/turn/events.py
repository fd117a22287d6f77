"""The events of one turn, as every client reads them: text as it streams, audio frames, tool
calls and their results, signs of life while nothing else comes, and the end of the turn (always last, also when the turn failed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE
from ..llm.base import ToolCall


@dataclass
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass
class AudioOut:
    """One frame of the spoken answer."""

    pcm: np.ndarray  # float32 mono, one 80 ms frame
    rate: int = SAMPLE_RATE  # the TTS (Mimi) rate


@dataclass
class ToolCalled:
    """The LLM called a tool."""

    call: ToolCall


@dataclass
class ToolAnswered:
    """A tool's result (or its error)."""

    call: ToolCall
    result: Any
    error: str | None


@dataclass
class Progress:
    """The turn is alive but has nothing to say yet (the LLM reads the prompt, a tool runs);
    `say`: a short holding phrase ("One moment…") the client speaks once, before the answer,
    and keeps out of the history."""

    stage: str  # "thinking" or "tool"
    seconds: float  # since the turn started
    say: str | None = None


@dataclass
class TurnDone:
    """The end of the turn: the whole answer, its route, its error code if it failed."""

    text: str
    route: str
    error: str | None = None  # LLMError code
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds from turn start
    tool_calls: int = 0
    language: str | None = None  # the answer's language (set by the turn runner)
    voice: str | None = None  # the voice it is (or would be) spoken with
    usage: dict[str, int] = field(default_factory=dict)  # the last LLM round's prompt: tokens, cached


TurnEvent = TextDelta | AudioOut | ToolCalled | ToolAnswered | Progress | TurnDone
