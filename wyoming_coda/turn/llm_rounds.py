"""The LLM rounds of a turn: the LLM's text streamed into the speaking pipeline, tool calls.

The LLM's text goes into the speaking pipeline while it streams, so speech starts after the
first sentence while the LLM keeps generating. Tool calls run between LLM rounds (bounded);
the whole turn is one task, cancelled as a whole on barge-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..aio import task_stream
from ..llm.base import LLMBackend, LLMError, Message, ToolCall, with_text_tool_calls
from ..speak.pipeline import SpeakingPipeline
from .events import AudioOut, Progress, TextDelta, ToolAnswered, ToolCalled, TurnDone, TurnEvent
from .spoken import CORRECTION, NO_ANSWER, ONE_MOMENT, REWRITE, Unspoken, failed, not_found, summary
from .tools import Toolbox

_LOGGER = logging.getLogger(__name__)

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
    max_turn_seconds: float = 60.0  # past this, the next LLM round answers without tools
    progress_seconds: float = 5.0  # a Progress event this often while nothing is said
    holding_seconds: float = 4.0  # past this with nothing said, "One moment…" once (0: never)


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
    state = _TurnState(start)
    await speech.start()  # the TTS row is taken while the LLM thinks
    audio_task = asyncio.create_task(pump_audio(speech, queue, mark)) if speech.speaks else None
    alive = asyncio.create_task(_keep_alive(request, state, queue))
    try:
        answer, error, tool_calls = await _converse(llm, request, queue, mark, state)
        alive.cancel()
        if audio_task is not None:
            await audio_task
    finally:
        for task in (alive, audio_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await speech.close()
    mark("done")
    await queue.put(TurnDone(answer.strip(), request.route, error, timings, tool_calls, usage=state.usage))


@dataclass
class _TurnState:
    """What the keep-alive needs to know of the rounds."""

    start: float
    stage: str = "thinking"  # or "tool"
    said: bool = False  # some of the answer was given
    usage: dict[str, int] = field(default_factory=dict)  # the prompt of the last round: tokens, cached


async def _keep_alive(request: TurnRequest, state: _TurnState, queue: asyncio.Queue[Any]) -> None:
    """While nothing of the answer is out: a Progress event every `progress_seconds` (a client's
    silence timeout then means a dead server, never a slow LLM), and once, past
    `holding_seconds`, the holding phrase (spoken here when the turn speaks)."""
    holding = request.holding_seconds > 0
    next_progress = request.progress_seconds
    while not state.said:
        elapsed = time.monotonic() - state.start
        due = min(next_progress, request.holding_seconds) if holding else next_progress
        if elapsed < due:
            await asyncio.sleep(due - elapsed)
            continue
        say = None
        if holding and elapsed >= request.holding_seconds:
            holding, say = False, ONE_MOMENT
            if request.speech.speaks and not request.speech.hold:
                request.speech.push(ONE_MOMENT + " ")
        if elapsed >= next_progress or say:
            await queue.put(Progress(state.stage, round(elapsed, 1), say))
            next_progress = elapsed + request.progress_seconds


async def _converse(
    llm: LLMBackend, request: TurnRequest, queue: asyncio.Queue[Any], mark: Mark, state: _TurnState
) -> tuple[str, str | None, int]:
    """The LLM rounds of a turn (text, tool calls, tool results), feeding speech as it goes.
    Returns the answer, the LLMError code if it failed, and the number of tool calls.

    What is spoken is filtered (`Unspoken`); a round that only echoed JSON, or a turn that ends
    on tool results, is answered with what the tools did. A call that matched nothing gets one
    corrective round; a second miss ends the turn with an honest "I couldn't find…". Past
    `max_turn_seconds` the next round must answer without tools."""
    speech = request.speech
    messages = list(request.messages)
    schemas = request.toolbox.schemas() if request.toolbox is not None else None
    # the LLM server stops a round past the answer's bound too: text held back from speech (JSON
    # a small model writes on and on) is not counted by the bound
    max_tokens = FAST_MAX_TOKENS if request.route == "fast" else request.max_answer_tokens + BOUND_GRACE
    answer, error, tool_calls = "", None, 0
    bound = AnswerBound(request.max_answer_tokens, request.max_answer_seconds)
    unspoken = Unspoken()
    done: list[str] = []  # summaries of the successful calls since the last words
    missed: ToolCall | None = None  # a call that matched nothing, corrected once
    rewritten = False  # a call that could not be read was asked for again
    made: set[str] = set()  # the calls of this turn (name and arguments)
    # a round's speech waits for the round's end unless it may be spoken before a tool call
    speech.hold = not (request.parallel and request.speak_before_tools)

    async def say(text: str) -> None:
        nonlocal answer
        state.said = True
        answer += text
        await queue.put(TextDelta(text))
        if speech.push(text):
            mark("llm_first_sentence")

    try:
        for iteration in range(request.max_tool_iterations + 1):
            round_text, calls = "", []
            late = time.monotonic() - state.start > request.max_turn_seconds
            answer_now = iteration >= request.max_tool_iterations or late
            tools_now = schemas if not answer_now else None  # last round: answer
            state.stage = "thinking"
            stream = with_text_tool_calls(llm.chat(messages, tools_now, max_tokens), tools_now)
            try:
                async with contextlib.aclosing(stream):
                    async for chunk in stream:
                        if chunk.usage:
                            state.usage = chunk.usage
                        if chunk.text:
                            mark("llm_first_token")
                            round_text += chunk.text
                            if not (text := unspoken.feed(chunk.text)):
                                continue
                            if not answer.strip() and not text.strip():
                                continue
                            await say(text)
                            done.clear()
                            if bound.ends_here(text, bool(_SENTENCE_END.search(answer))):
                                mark("answer_bounded")
                                break
                        calls += chunk.tool_calls
            except LLMError as err:  # a call past mending: asked for once more, then the turn says so
                if err.code != "malformed-tool-call" or rewritten:
                    raise
                rewritten = True
                messages += [{"role": "assistant", "content": round_text}, {"role": "user", "content": REWRITE}]
                continue
            fresh = [call for call in calls if _key(call) not in made]
            if bound.reached or not fresh or request.toolbox is None:
                break  # no calls, or only calls already made this turn (a small model loops): answer now
            calls = fresh
            made.update(_key(call) for call in calls)
            if speech.flush():  # speak what was said before the tools run
                mark("llm_first_sentence")
            if not request.speak_before_tools:
                speech.discard()
            elif request.parallel:
                speech.release()
            _LOGGER.debug("LLM round %d: %r, calls %s", iteration, round_text[:200],
                          [(c.name, c.arguments) for c in calls])
            messages.append({"role": "assistant", "content": round_text, "tool_calls": calls})
            state.stage = "tool"
            misses: list[ToolCall] = []
            for call in calls:
                tool_calls += 1
                await queue.put(ToolCalled(call))
                result, failure = await request.toolbox.call(call)
                await queue.put(ToolAnswered(call, result, failure))
                payload = {"error": failure} if failure else result
                if failed(result, failure):  # the error, and how to correct it
                    misses.append(call)
                    payload = {**payload, "hint": CORRECTION} if isinstance(payload, dict) else payload
                else:
                    done.append(summary(call, result))
                content = json.dumps(payload, ensure_ascii=False, default=str)
                messages.append({"role": "tool", "content": content, "tool_call_id": call.id, "name": call.name})
            if misses and missed is not None and not done:  # corrected once, missed again: say so
                await say(not_found(misses[-1]))
                break
            missed = missed or (misses[-1] if misses else None)
    except LLMError as err:
        _LOGGER.warning("The LLM failed the turn (%s): %s", err.code, err)
        error = err.code
        await say(err.spoken if not answer else " " + err.spoken)
    if not answer.strip():  # every turn ends with words: what the tools did, or what was not found
        await say(" ".join(dict.fromkeys(done)) if done else not_found(missed) if missed else NO_ANSWER)
    if speech.flush():  # an answer without a sentence end is one sentence, complete now
        mark("llm_first_sentence")
    speech.end()  # speaks what is still held
    return answer, error, tool_calls


def _key(call: ToolCall) -> str:
    return json.dumps([call.name, call.arguments], sort_keys=True, default=str)


async def pump_audio(speech: SpeakingPipeline, queue: asyncio.Queue[Any], mark: Mark) -> None:
    """Put the answer's frames on the turn's queue as they are decoded."""
    async for frame in speech.frames():
        mark("tts_first_audio")
        await queue.put(AudioOut(frame))
