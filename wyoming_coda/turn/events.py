"""The events of one turn, as every client reads them: text as it streams, audio frames, tool
calls and their results, and the end of the turn (always last, also when the turn failed)."""

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
class TurnDone:
    """The end of the turn: the whole answer, its route, its error code if it failed."""

    text: str
    route: str
    error: str | None = None  # LLMError code
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds from turn start
    tool_calls: int = 0
    language: str | None = None  # the answer's language (set by the turn runner)
    voice: str | None = None  # the voice it is (or would be) spoken with


TurnEvent = TextDelta | AudioOut | ToolCalled | ToolAnswered | TurnDone
