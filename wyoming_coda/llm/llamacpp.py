"""llama.cpp embedded in the server process (xllamacpp), for users without an Ollama server:
a GGUF file (path, or `owner/repo/file.gguf` on Hugging Face) served on 127.0.0.1 and spoken
to through the OpenAI-compatible API."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..config import ExternalLLMConfig
from .base import LLMChunk, Message, model_missing
from .openai import OpenAIBackend


def resolve_gguf(model: str) -> Path:
    """A local GGUF path, downloading `owner/repo/file.gguf` from Hugging Face if needed."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    parts = model.split("/")
    if len(parts) >= 3 and model.endswith(".gguf"):
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
        except Exception as err:  # reported as a missing model
            raise model_missing(model, f"cannot get {model} from Hugging Face: {err}") from err
    raise model_missing(model, f"GGUF model {model} not found (a file path or owner/repo/file.gguf)")


class LlamaCppBackend:
    """An in-process llama.cpp server; started on first use."""

    name = "llamacpp"

    def __init__(self, config: ExternalLLMConfig) -> None:
        self.model = config.model
        self.threads = config.threads or os.cpu_count() or 1
        self.context = config.context_size
        self.timeout = config.timeout
        self.temperature = config.temperature
        self._server: Any = None
        self._client: OpenAIBackend | None = None
        self._lock = asyncio.Lock()

    def _start(self) -> Any:
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(resolve_gguf(self.model))
        params.n_ctx = self.context
        params.n_parallel = 1
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        return xlc.Server(params)

    async def _backend(self) -> OpenAIBackend:
        async with self._lock:
            if self._client is None:
                self._server = await asyncio.to_thread(self._start)
                self._client = OpenAIBackend(self._server.listening_address, "local", timeout=self.timeout,
                                             temperature=self.temperature)
        return self._client

    async def chat(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[LLMChunk]:
        backend = await self._backend()
        async for chunk in backend.chat(messages, tools, max_tokens):
            yield chunk

    async def check(self) -> None:
        await (await self._backend()).check()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._server = None
