"""The LLM rounds of a turn: the LLM's text streamed into the speaking pipeline, tool calls.

The LLM's text goes into the speaking pipeline while it streams, so speech starts after the
first sentence while the LLM keeps generating. Tool calls run between LLM rounds (bounded);
the whole turn is one task, cancelled as a whole on barge-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from ..aio import task_stream
from ..llm.base import LLMBackend, LLMError, Message, with_text_tool_calls
from ..speak.pipeline import SpeakingPipeline
from .events import AudioOut, TextDelta, ToolAnswered, ToolCalled, TurnDone, TurnEvent
from .tools import Toolbox

FAST_MAX_TOKENS = 60


Mark = Callable[[str], None]


@dataclass
class TurnRequest:
    messages: list[Message]
    toolbox: Toolbox | None
    route: str
    max_tool_iterations: int
    speech: SpeakingPipeline  # where the answer is spoken (text only when it has no TTS)
    parallel: bool = True  # speak while the LLM writes (else once the whole answer is in)
    speak_before_tools: bool = True  # speak a round's text at once, even if tool calls follow
    max_answer_tokens: int = 400  # past this many streamed pieces, or
    max_answer_seconds: float = 30.0  # this long, the answer ends at its next sentence end


class AnswerBound:
    """The length bound of one answer: once past it, the answer ends where a sentence does (or,
    with no sentence end in sight, BOUND_GRACE pieces later)."""

    def __init__(self, tokens: int, seconds: float) -> None:
        self.tokens, self.deadline = tokens, time.monotonic() + seconds
        self.count = 0
        self.reached = False

    def ends_here(self, piece: str, sentence_ended: bool) -> bool:
        """Count a streamed piece; True when the answer must stop after it."""
        self.count += 1
        over = self.count >= self.tokens or time.monotonic() >= self.deadline
        if over and not self.reached:
            self.reached, self.tokens = True, min(self.count, self.tokens)
        return self.reached and (sentence_ended or self.count >= self.tokens + BOUND_GRACE)


BOUND_GRACE = 60  # pieces an answer past its bound may take to end its sentence
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*\s*$")


def run_turn(llm: LLMBackend, request: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
    """Stream the events of one turn; closing the iterator cancels the turn."""
    return task_stream(lambda queue: _produce(llm, request, queue), "coda turn")


async def _produce(llm: LLMBackend, request: TurnRequest, queue: asyncio.Queue[Any]) -> None:
    start = time.monotonic()
    timings: dict[str, float] = {}

    def mark(stage: str) -> None:
        timings.setdefault(stage, time.monotonic() - start)

    speech = request.speech
    await speech.start()  # the TTS row is taken while the LLM thinks
    audio_task = asyncio.create_task(pump_audio(speech, queue, mark)) if speech.speaks else None
    try:
        answer, error, tool_calls = await _converse(llm, request, queue, mark)
        if audio_task is not None:
            await audio_task
    finally:
        if audio_task is not None and not audio_task.done():
            audio_task.cancel()
            await asyncio.gather(audio_task, return_exceptions=True)
        await speech.close()
    mark("done")
    await queue.put(TurnDone(answer.strip(), request.route, error, timings, tool_calls))


async def _converse(
    llm: LLMBackend, request: TurnRequest, queue: asyncio.Queue[Any], mark: Mark
) -> tuple[str, str | None, int]:
    """The LLM rounds of a turn (text, tool calls, tool results), feeding speech as it goes.
    Returns the answer, the LLMError code if it failed, and the number of tool calls."""
    speech = request.speech
    messages = list(request.messages)
    schemas = request.toolbox.schemas() if request.toolbox is not None else None
    max_tokens = FAST_MAX_TOKENS if request.route == "fast" else None
    answer, error, tool_calls = "", None, 0
    bound = AnswerBound(request.max_answer_tokens, request.max_answer_seconds)
    # a round's speech waits for the round's end unless it may be spoken before a tool call
    speech.hold = not (request.parallel and request.speak_before_tools)
    try:
        for iteration in range(request.max_tool_iterations + 1):
            round_text, calls = "", []
            tools_now = schemas if iteration < request.max_tool_iterations else None  # last round: answer
            stream = with_text_tool_calls(llm.chat(messages, tools_now, max_tokens), tools_now)
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    if chunk.text:
                        mark("llm_first_token")
                        round_text += chunk.text
                        answer += chunk.text
                        await queue.put(TextDelta(chunk.text))
                        sentence_ended = speech.push(chunk.text)
                        if sentence_ended:
                            mark("llm_first_sentence")
                        if bound.ends_here(chunk.text, sentence_ended or bool(_SENTENCE_END.search(chunk.text))):
                            mark("answer_bounded")
                            break
                    calls += chunk.tool_calls
            if bound.reached or not calls or request.toolbox is None:
                break
            if speech.flush():  # speak what was said before the tools run
                mark("llm_first_sentence")
            if not request.speak_before_tools:
                speech.discard()
            elif request.parallel:
                speech.release()
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
        speech.push(spoken)
    if speech.flush():  # an answer without a sentence end is one sentence, complete now
        mark("llm_first_sentence")
    speech.end()  # speaks what is still held
    return answer, error, tool_calls


async def pump_audio(speech: SpeakingPipeline, queue: asyncio.Queue[Any], mark: Mark) -> None:
    """Put the answer's frames on the turn's queue as they are decoded."""
    async for frame in speech.frames():
        mark("tts_first_audio")
        await queue.put(AudioOut(frame))
