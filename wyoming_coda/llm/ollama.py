"""Ollama through its official client: streaming chat with tools, `think` off, `keep_alive`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama

from ..config import ExternalLLMConfig
from .base import LLMChunk, LLMError, Message, ToolCall, model_missing, timed_out, to_wire, unavailable

CONNECT_RETRIES = 2


class OllamaBackend:
    """A model served by Ollama."""

    name = "ollama"

    def __init__(self, config: ExternalLLMConfig) -> None:
        self.model = config.model
        self.url = config.url
        self.keep_alive = config.keep_alive
        self.think = config.think
        self.temperature = config.temperature
        self._client = ollama.AsyncClient(host=config.url, timeout=config.timeout)

    def _error(self, err: Exception) -> LLMError:
        if isinstance(err, ollama.ResponseError):
            if err.status_code == 404:
                return model_missing(self.model, f"ollama at {self.url}: {err.error}")
            return LLMError(f"ollama at {self.url}: {err.error}", "Sorry, my language model failed.", "llm-error")
        if isinstance(err, httpx.TimeoutException) and not isinstance(err, httpx.ConnectTimeout):
            return timed_out(f"ollama at {self.url} did not answer in time: {err}")
        return unavailable(f"ollama at {self.url} is unreachable: {err}")

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[LLMChunk]:
        options: dict[str, Any] = {"num_predict": max_tokens} if max_tokens else {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                stream = await self._client.chat(
                    self.model, messages=[to_wire(m, "ollama") for m in messages], tools=tools or None, stream=True,
                    think=self.think, keep_alive=self.keep_alive, options=options or None,
                )
                break
            except (ConnectionError, httpx.ConnectError) as err:
                if attempt == CONNECT_RETRIES:
                    raise self._error(err) from err
                await asyncio.sleep(0.25 * 2**attempt)
            except (ollama.ResponseError, httpx.HTTPError) as err:
                raise self._error(err) from err
        try:
            async for part in stream:
                message = part.message
                calls = [
                    ToolCall(name=c.function.name, arguments=dict(c.function.arguments or {}))
                    for c in message.tool_calls or []
                ]
                # Ollama counts only the prompt tokens it evaluated: the rest came from its cache
                usage = {"prompt_tokens": part.prompt_eval_count} if part.done and part.prompt_eval_count else None
                if message.content or calls or usage:
                    yield LLMChunk(text=message.content or "", tool_calls=calls, usage=usage)
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError, json.JSONDecodeError) as err:
            raise self._error(err) from err

    async def check(self) -> None:
        try:
            listed = await self._client.list()
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as err:
            raise self._error(err) from err
        names = {m.model for m in listed.models}
        if self.model not in names and f"{self.model}:latest" not in names:
            raise model_missing(self.model, f"ollama at {self.url} has no model {self.model}")

    async def close(self) -> None:
        await self._client._client.aclose()
