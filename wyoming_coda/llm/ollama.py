"""Ollama through its official client: streaming chat with tools, `think` off, `keep_alive`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama

from ..config import ExternalLLMConfig
from .base import LLMChunk, LLMError, Message, ToolCall, model_missing, to_wire, unavailable

CONNECT_RETRIES = 2


class OllamaBackend:
    """A model served by Ollama."""

    name = "ollama"

    def __init__(self, config: ExternalLLMConfig) -> None:
        self.model = config.model
        self.url = config.url
        self.keep_alive = config.keep_alive
        self.think = config.think
        self._client = ollama.AsyncClient(host=config.url, timeout=config.timeout)

    def _error(self, err: Exception) -> LLMError:
        if isinstance(err, ollama.ResponseError):
            if err.status_code == 404:
                return model_missing(self.model, f"ollama at {self.url}: {err.error}")
            return LLMError(f"ollama at {self.url}: {err.error}", "Sorry, my language model failed.", "llm-error")
        return unavailable(f"ollama at {self.url} is unreachable: {err}")

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[LLMChunk]:
        options = {"num_predict": max_tokens} if max_tokens else None
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                stream = await self._client.chat(
                    self.model, messages=[to_wire(m, "ollama") for m in messages], tools=tools or None, stream=True,
                    think=self.think, keep_alive=self.keep_alive, options=options,
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
                if message.content or calls:
                    yield LLMChunk(text=message.content or "", tool_calls=calls)
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
