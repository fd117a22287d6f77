"""What every LLM backend speaks: OpenAI-style messages and tools in, streamed chunks out."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Message = dict[str, Any]  # {"role", "content", optional "tool_calls": [ToolCall], "tool_call_id", "name"}


@dataclass
class ToolCall:
    """A tool the model wants called."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:12])


@dataclass
class LLMChunk:
    """One piece of a streamed answer: text, whole tool calls, or both."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: dict[str, int] | None = None  # at the end: prompt_tokens, cached_tokens (what the server reports)


def timed_out(detail: str) -> LLMError:
    """The LLM server is there but did not answer in time (not an outage)."""
    return LLMError(detail, "Sorry, the language model took too long to answer.", "llm-timeout")


class LLMError(Exception):
    """The LLM cannot answer; `spoken` is what the assistant says to the user."""

    def __init__(self, detail: str, spoken: str, code: str) -> None:
        super().__init__(detail)
        self.spoken = spoken
        self.code = code


def unavailable(detail: str) -> LLMError:
    return LLMError(detail, "Sorry, I can't reach my language model right now.", "llm-unavailable")


def model_missing(model: str, detail: str) -> LLMError:
    return LLMError(detail, f"Sorry, the language model {model} is not installed.", "llm-model-missing")


class LLMBackend(Protocol):
    """A chat model that streams."""

    name: str
    model: str

    def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[LLMChunk]:
        """Stream the answer to `messages`; tool calls arrive whole."""

    async def check(self) -> None:
        """Raise LLMError unless the server answers and has the model."""

    async def close(self) -> None:
        """Release connections (and an embedded runtime)."""


class _Failing:
    """A stream whose first read raises `error`."""

    def __init__(self, error: LLMError) -> None:
        self.error = error

    def __aiter__(self) -> _Failing:
        return self

    async def __anext__(self) -> LLMChunk:
        raise self.error


class DisabledBackend:
    """No LLM at all (`moshi.external_llm_enabled: false`): every request says so."""

    name = "none"
    model = ""

    def _error(self) -> LLMError:
        return LLMError("the external LLM is disabled (moshi.external_llm_enabled: false)",
                        "My language model is switched off.", "llm-disabled")

    def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[LLMChunk]:
        return _Failing(self._error())

    async def check(self) -> None:
        raise self._error()

    async def close(self) -> None:
        """Nothing to release."""


def to_wire(message: Message, style: Literal["ollama", "openai"]) -> dict[str, Any]:
    """A history message as a chat API wants it: OpenAI-compatible servers take tool calls
    with ids and JSON-text arguments and answer them by id; Ollama takes argument objects and
    answers them by tool name."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content") or ""}
    calls: list[ToolCall] = message.get("tool_calls") or []
    if calls and style == "openai":
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for c in calls]
    elif calls:
        out["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]
    if message["role"] == "tool":
        if style == "openai":
            out["tool_call_id"] = message.get("tool_call_id", "")
        else:
            out["tool_name"] = message.get("name", "")
    return out


def tool_schema(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI / Ollama tool definition."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def tool_name(schema: dict[str, Any]) -> str:
    return str(schema.get("function", schema).get("name", ""))


def bare_name(name: str) -> str:
    """A tool's name without its namespace (Home Assistant 2026.10 offers `intent__HassTurnOn`)."""
    return name.rsplit("__", 1)[-1]


def offered_name(name: str, offered: Collection[str]) -> str:
    """The offered tool a model means by `name`, which small models write without the prefix."""
    return name if name in offered else next((n for n in offered if bare_name(n) == name), name)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_CALL_KEYS = re.compile(r"[\"']?(?:name|function|arguments|parameters)[\"']?\s*:")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PYTHON_LITERALS = {"True": "true", "False": "false", "None": "null"}
MALFORMED_SPOKEN = "Sorry, I couldn't carry that out."
AFTER_CALL = 16  # pieces read past a bare JSON call before the stream is closed


def _repaired(body: str) -> str:
    """JSON as small models get it wrong, mended: single quotes, Python literals, trailing
    commas, and the closing quotes and brackets of an answer cut short."""
    text = body.strip()
    if '"' not in text:
        text = text.replace("'", '"')
    text = re.sub(r"\b(True|False|None)\b", lambda m: _PYTHON_LITERALS[m.group(1)], text)
    closers, in_string, escaped = [], False, False
    for char in text:
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and closers:
            closers.pop()
    return _TRAILING_COMMA.sub(r"\1", text + ('"' if in_string else "") + "".join(reversed(closers)))


def _lenient_json(text: str) -> Any:
    """`json.loads`, then once more after `_repaired`; JSONDecodeError when both fail."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(_repaired(text))


def parse_text_tool_calls(text: str, known: set[str]) -> list[ToolCall] | None:
    """Tool calls a local model wrote as JSON text (bare, fenced or in <tool_call> tags), or
    None when the text is not a tool call of a known tool."""
    stripped = text.strip()
    bodies = _TAGGED.findall(stripped) or [_FENCE.sub("", stripped)]
    calls: list[ToolCall] = []
    for body in bodies:
        try:
            data = _lenient_json(body)
        except json.JSONDecodeError:
            return None
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict):
                return None
            item = item.get("function", item)
            name = item.get("name")
            args = item.get("arguments", item.get("parameters", {}))
            if isinstance(args, str):
                try:
                    args = _lenient_json(args or "{}")
                except json.JSONDecodeError:
                    return None
            name = offered_name(name, known) if isinstance(name, str) else name
            if name not in known or not isinstance(args, dict):
                return None
            calls.append(ToolCall(name=name, arguments=args))
    return calls or None


def _call_shaped(text: str) -> bool:
    """Whether held text is a tool call that cannot be used (a call of no offered tool, or JSON
    past mending with a call's keys) rather than other JSON (an echoed tool result, which the
    turn never speaks)."""
    stripped = text.strip()
    bodies = _TAGGED.findall(stripped) or [_FENCE.sub("", stripped)]
    for body in bodies:
        try:
            data = _lenient_json(body)
        except json.JSONDecodeError:
            if _CALL_KEYS.search(body):
                return True
            continue
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and "name" in item.get("function", item) and (
                    {"arguments", "parameters"} & item.get("function", item).keys()):
                return True
    return bool(_TAGGED.search(stripped))


def _object_end(text: str) -> int | None:
    """Where the bare JSON object `text` starts with ends (its braces balance, strings aside);
    None while it is open, or when `text` is no bare object."""
    start = len(text) - len(text.lstrip())
    if not text.startswith("{", start):
        return None
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def looks_like_tool_call(text: str) -> bool:
    """True when the start of an answer may be a JSON tool call (hold it back from speech)."""
    head = text.lstrip()[:12]
    return head.startswith(("{", "[", "<tool_call>", "```"))


async def with_text_tool_calls(
    stream: AsyncIterator[LLMChunk], tools: list[dict[str, Any]] | None
) -> AsyncGenerator[LLMChunk, None]:
    """Pass a stream through, turning a JSON-text tool call into a real one (mended where a
    small model got the JSON wrong). Text that starts like JSON is held back until the end of
    the answer (or of its first bare object: the rest of the stream is not read), so it is never
    spoken; a tool call that cannot be read (or names no offered
    tool) ends the turn with an LLMError `malformed-tool-call` instead of being read aloud."""
    known = {tool_name(t) for t in tools or []}
    held = ""
    holding = bool(known)
    after_call = 0  # pieces read since a bare JSON call closed
    try:
        async for chunk in stream:
            if chunk.tool_calls or chunk.usage:
                yield LLMChunk(tool_calls=chunk.tool_calls, usage=chunk.usage)
            if not chunk.text:
                continue
            if not holding:
                yield LLMChunk(text=chunk.text)
                continue
            if after_call:  # a bare JSON call is whole: the end of the stream (its usage) is waited
                after_call += 1  # for a few pieces, what a small model rambles on with is not
                if after_call > AFTER_CALL:
                    break
                continue
            held += chunk.text
            if held.strip() and not looks_like_tool_call(held):
                yield LLMChunk(text=held)
                held, holding = "", False
            elif (end := _object_end(held)) is not None:
                held, after_call = held[:end], 1
    finally:  # closing this stream (a bounded or cancelled answer) ends the LLM's request too
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    if held:
        calls = parse_text_tool_calls(held, known)
        if calls:
            yield LLMChunk(tool_calls=calls)
        elif _call_shaped(held):
            raise LLMError(f"the model wrote a tool call that cannot be used: {held.strip()[:200]!r}",
                           MALFORMED_SPOKEN, "malformed-tool-call")
        else:
            yield LLMChunk(text=held)
