"""TEST DOUBLE of Ollama's HTTP API (no Ollama server can run in the test environment).

Faithful to Ollama's wire format for the calls the product makes: POST /api/chat streams
NDJSON (one JSON object per line); text arrives in `done: false` chunks, tool calls arrive whole
in a `done: false` chunk with empty content and parsed `arguments`, the last chunk has
`done: true`, `done_reason` and durations in ns; errors before streaming are an HTTP status
with {"error": ...} (404 unknown model), mid-stream errors an NDJSON line {"error": ...};
GET /api/tags lists models. What the model "says" is scripted by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _offered_name(name: str, offered: list[str]) -> str:
    """A scripted tool name as offered: Home Assistant namespaces its tools
    (`homeassistant__HassTurnOn`), so a script may name the part after the last `__`."""
    return next((tool for tool in offered if tool.split("__")[-1] == name), name)


def _call_id() -> str:
    return "call_" + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(8))


@dataclass
class Reply:
    """One scripted answer: text (streamed word by word) and/or whole tool calls."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delay: float = 0.005  # between chunks
    error_midstream: bool = False
    first_delay: float = 0.0  # before the first chunk: a model reading a long prompt


class OllamaDouble:
    """An aiohttp app on 127.0.0.1 that answers /api/chat from a script."""

    def __init__(self, models: tuple[str, ...] = ("qwen3:8b",)) -> None:
        self.models = models
        self.script: list[Reply] = []
        self.default = Reply(text="Okay.")
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._answering: set[asyncio.Task[Any]] = set()  # requests still streaming (a slow reply)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply_for(self, body: dict[str, Any]) -> Reply:
        if self.script:
            reply = self.script.pop(0)
            if reply.tool_calls and not body.get("tools"):
                return self.default  # a request without tools cannot get tool calls
            offered = [tool["function"]["name"] for tool in body.get("tools") or []]
            calls = [(_offered_name(name, offered), args) for name, args in reply.tool_calls]
            return Reply(reply.text, calls, reply.delay, reply.error_midstream, reply.first_delay)
        return self.default

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # a kill, not a drain
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for task in self._answering:  # a client that gave up on a slow reply left it running
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tags(self, request: web.Request) -> web.Response:
        models = [{"name": m, "model": m, "modified_at": _now(), "size": 1, "digest": "0" * 64,
                   "details": {"format": "gguf"}} for m in self.models]
        return web.json_response({"models": models})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        model = body.get("model") or ""
        if model not in self.models:
            return web.json_response({"error": f"model '{model}' not found"}, status=404)
        reply = self.reply_for(body)
        chunks: list[dict[str, Any]] = []
        words = reply.text.split(" ")
        for i, word in enumerate(words):
            if word or i:
                chunks.append({"role": "assistant", "content": word if i == 0 else " " + word})
        if reply.tool_calls:
            chunks.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": _call_id(), "function": {"index": i, "name": name, "arguments": args}}
                for i, (name, args) in enumerate(reply.tool_calls)]})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._answering.add(task)
        try:
            with contextlib.suppress(ConnectionResetError):  # a cancelled turn hangs up, as with a real Ollama
                await self._stream(response, model, chunks, reply)
        finally:
            self._answering.discard(task)
        return response

    async def _stream(self, response: web.StreamResponse, model: str, chunks: list[dict[str, Any]],
                      reply: Reply) -> None:
        start = time.monotonic_ns()
        await asyncio.sleep(reply.first_delay)
        for chunk in chunks:
            line = {"model": model, "created_at": _now(), "message": chunk, "done": False}
            await response.write((json.dumps(line) + "\n").encode())
            await asyncio.sleep(reply.delay)
        if reply.error_midstream:
            await response.write(b'{"error":"an error was encountered while running the model"}\n')
        else:
            final = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                     "done": True, "done_reason": "stop", "total_duration": time.monotonic_ns() - start,
                     "load_duration": 1000, "prompt_eval_count": 10, "prompt_eval_duration": 1000,
                     "eval_count": len(chunks), "eval_duration": 1000}
            await response.write((json.dumps(final) + "\n").encode())
        await response.write_eof()
