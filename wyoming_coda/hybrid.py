"""The hybrid processor: one conversation turn through the LLM and, in parallel, TTS.

The LLM's text is cut into sentences while it streams; each sentence goes to the TTS stream at
once, so speech starts after the first sentence while the LLM keeps generating. Tool calls run
between LLM rounds (bounded); the whole turn is one task, cancelled as a whole on barge-in.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .aio import task_stream
from .engines.tts import TtsStream
from .llm.base import LLMBackend, LLMError, Message, ToolCall, with_text_tool_calls
from .text import split_sentences
from .tools import Toolbox

FAST_MAX_TOKENS = 60


@dataclass
class TextDelta:
    text: str


@dataclass
class AudioOut:
    pcm: np.ndarray  # float32 mono at the TTS rate, one 80 ms frame


@dataclass
class ToolCalled:
    call: ToolCall


@dataclass
class ToolAnswered:
    call: ToolCall
    result: Any
    error: str | None


@dataclass
class TurnDone:
    text: str
    route: str
    error: str | None = None  # LLMError code
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds from turn start
    tool_calls: int = 0


TurnEvent = TextDelta | AudioOut | ToolCalled | ToolAnswered | TurnDone


@dataclass
class TurnRequest:
    messages: list[Message]
    toolbox: Toolbox | None
    route: str
    max_tool_iterations: int
    open_tts: Callable[[], Awaitable[TtsStream]] | None  # None: text only


class SentenceFeeder:
    """Regroups streamed text into sentences for TTS."""

    def __init__(self, tts: TtsStream | None) -> None:
        self.tts = tts
        self._buffer = ""
        self.sentences = 0

    def push(self, text: str) -> bool:
        """Add text; True when it completed at least one sentence."""
        sentences, self._buffer = split_sentences(self._buffer + text)
        for sentence in sentences:
            self._speak(sentence)
        return bool(sentences)

    def flush(self) -> None:
        rest, self._buffer = self._buffer.strip(), ""
        if rest:
            self._speak(rest)

    def _speak(self, sentence: str) -> None:
        self.sentences += 1
        if self.tts is not None:
            self.tts.add_text(sentence)


def run_turn(llm: LLMBackend, request: TurnRequest) -> AsyncIterator[TurnEvent]:
    """Stream the events of one turn; closing the iterator cancels the turn."""
    return task_stream(lambda queue: _produce(llm, request, queue), "coda turn")


async def _produce(llm: LLMBackend, request: TurnRequest, queue: asyncio.Queue[Any]) -> None:
    start = time.monotonic()
    timings: dict[str, float] = {}

    def mark(stage: str) -> None:
        timings.setdefault(stage, time.monotonic() - start)

    tts = await request.open_tts() if request.open_tts is not None else None
    audio_task = asyncio.create_task(_pump_audio(tts, queue, mark)) if tts is not None else None
    try:
        answer, error, tool_calls = await _converse(llm, request, queue, tts, mark)
        if audio_task is not None:
            await audio_task
    finally:
        if audio_task is not None and not audio_task.done():
            audio_task.cancel()
            await asyncio.gather(audio_task, return_exceptions=True)
    mark("done")
    await queue.put(TurnDone(answer.strip(), request.route, error, timings, tool_calls))


async def _converse(
    llm: LLMBackend, request: TurnRequest, queue: asyncio.Queue[Any], tts: TtsStream | None,
    mark: Callable[[str], None],
) -> tuple[str, str | None, int]:
    """The LLM rounds of a turn (text, tool calls, tool results), feeding TTS as it goes.
    Returns the answer, the LLMError code if it failed, and the number of tool calls."""
    feeder = SentenceFeeder(tts)
    messages = list(request.messages)
    schemas = request.toolbox.schemas() if request.toolbox is not None else None
    max_tokens = FAST_MAX_TOKENS if request.route == "fast" else None
    answer, error, tool_calls = "", None, 0
    try:
        for iteration in range(request.max_tool_iterations + 1):
            round_text, calls = "", []
            tools_now = schemas if iteration < request.max_tool_iterations else None  # last round: answer
            async for chunk in with_text_tool_calls(llm.chat(messages, tools_now, max_tokens), tools_now):
                if chunk.text:
                    mark("llm_first_token")
                    round_text += chunk.text
                    answer += chunk.text
                    await queue.put(TextDelta(chunk.text))
                    if feeder.push(chunk.text):
                        mark("llm_first_sentence")
                calls += chunk.tool_calls
            if not calls or request.toolbox is None:
                break
            feeder.flush()  # speak what was said before the tools run
            messages.append({"role": "assistant", "content": round_text, "tool_calls": calls})
            for call in calls:
                tool_calls += 1
                await queue.put(ToolCalled(call))
                result, failure = await request.toolbox.call(call)
                await queue.put(ToolAnswered(call, result, failure))
                content = json.dumps({"error": failure} if failure else result, ensure_ascii=False, default=str)
                messages.append({"role": "tool", "content": content, "tool_call_id": call.id, "name": call.name})
    except LLMError as err:
        error = err.code
        spoken = err.spoken if not answer else " " + err.spoken
        answer += spoken
        await queue.put(TextDelta(spoken))
        feeder.push(spoken)
    feeder.flush()
    if tts is not None:
        tts.end_text()
    return answer, error, tool_calls


async def _pump_audio(tts: TtsStream, queue: asyncio.Queue[Any], mark: Callable[[str], None]) -> None:
    try:
        async for frame in tts.audio():
            mark("tts_first_audio")
            await queue.put(AudioOut(frame))
    finally:
        await tts.close()
