"""Any OpenAI-compatible chat server (llama.cpp, vLLM, ...): streamed SSE over aiohttp."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .base import LLMChunk, LLMError, Message, ToolCall, model_missing, timed_out, to_wire, unavailable

CONNECT_RETRIES = 2


class OpenAIBackend:
    """A model behind `/v1/chat/completions`."""

    name = "openai"

    def __init__(
        self, url: str, model: str, timeout: float = 60.0, api_key: str | None = None, temperature: float | None = None
    ) -> None:
        self.model = model
        self.temperature = temperature
        self.base = url.rstrip("/") if url.rstrip("/").endswith("/v1") else url.rstrip("/") + "/v1"
        self._timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=timeout)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                response = await self._http().post(f"{self.base}/chat/completions", json=body)
            except TimeoutError as err:  # the server is there, the model is slow (a long prompt)
                raise timed_out(f"{self.base}: no answer in time: {err}") from err
            except aiohttp.ClientConnectionError as err:
                if attempt == CONNECT_RETRIES:
                    raise unavailable(f"{self.base} is unreachable: {err}") from err
                await asyncio.sleep(0.25 * 2**attempt)
                continue
            if response.status == 404:
                raise model_missing(self.model, f"{self.base}: {await response.text()}")
            if response.status >= 400:
                raise LLMError(f"{self.base}: HTTP {response.status} {await response.text()}",
                               "Sorry, my language model failed.", "llm-error")
            return response
        raise AssertionError("unreachable")

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[LLMChunk]:
        body: dict[str, Any] = {"model": self.model, "messages": [to_wire(m, "openai") for m in messages],
                                "stream": True, "stream_options": {"include_usage": True}}
        if tools:
            body["tools"] = tools
        if max_tokens:
            body["max_tokens"] = max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        response = await self._post(body)
        partial: dict[int, dict[str, Any]] = {}
        usage: dict[str, int] | None = None
        try:
            async for raw in response.content:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    raise LLMError(f"{self.base}: {event['error']}", "Sorry, my language model failed.", "llm-error")
                usage = _usage(event) or usage
                for choice in event.get("choices", []):
                    delta = choice.get("delta") or {}
                    for call in delta.get("tool_calls") or []:
                        slot = partial.setdefault(call.get("index", 0), {"id": None, "name": "", "arguments": ""})
                        slot["id"] = call.get("id") or slot["id"]
                        function = call.get("function") or {}
                        slot["name"] += function.get("name") or ""
                        slot["arguments"] += function.get("arguments") or ""
                    if delta.get("content"):
                        yield LLMChunk(text=delta["content"])
        except TimeoutError as err:
            raise timed_out(f"{self.base}: the model went silent: {err}") from err
        except aiohttp.ClientError as err:
            raise unavailable(f"{self.base}: stream broken: {err}") from err
        finally:
            response.release()
        if usage:
            yield LLMChunk(usage=usage)
        calls = []
        for slot in partial.values():
            try:
                arguments = json.loads(slot["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = {}
            call = ToolCall(name=slot["name"], arguments=arguments if isinstance(arguments, dict) else {})
            if slot["id"]:
                call.id = slot["id"]
            calls.append(call)
        if calls:
            yield LLMChunk(tool_calls=calls)

    async def check(self) -> None:
        try:
            async with self._http().get(f"{self.base}/models") as response:
                if response.status >= 400:
                    raise unavailable(f"{self.base}/models: HTTP {response.status}")
        except aiohttp.ClientError as err:
            raise unavailable(f"{self.base} is unreachable: {err}") from err

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _usage(event: dict[str, Any]) -> dict[str, int] | None:
    """The prompt's size and how much of it the server's prompt cache held: the OpenAI `usage`
    object (`prompt_tokens_details.cached_tokens`), or llama.cpp's `timings` (`cache_n`)."""
    usage, timings = event.get("usage") or {}, event.get("timings") or {}
    if not usage and not timings:
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None and "cache_n" in timings:
        cached = timings["cache_n"]
    prompt = usage.get("prompt_tokens")
    if prompt is None and "prompt_n" in timings:
        prompt = timings["prompt_n"] + timings.get("cache_n", 0)
    return {k: int(v) for k, v in (("prompt_tokens", prompt), ("cached_tokens", cached)) if v is not None}
