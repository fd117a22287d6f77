"""Headless Chromium (Debian's package) driven over the DevTools protocol, optionally with a
fake microphone playing a WAV file."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from tests.serverproc import free_port

CHROMIUM = "/usr/bin/chromium"


class Browser:
    """One Chromium process and one page."""

    def __init__(self, microphone: Path | None = None, size: tuple[int, int] = (1280, 800),
                 ignore_certificate_errors: bool = False) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="coda-chromium-")
        media = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={microphone}"] if microphone else []
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.profile}", f"--remote-debugging-port={self.port}",
             f"--window-size={size[0]},{size[1]}", *media,
             *(["--ignore-certificate-errors"] if ignore_certificate_errors else []), "--autoplay-policy=no-user-gesture-required",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.prompt_answer: str | None = None  # typed into the page's prompt() dialogs
        self.prompts: list[str] = []  # the dialogs' messages, in order
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def open(self, url: str) -> None:
        self._http = aiohttp.ClientSession()
        for _ in range(100):
            try:
                async with self._http.get(f"http://127.0.0.1:{self.port}/json/list") as response:
                    pages = [t for t in await response.json() if t["type"] == "page"]
                    if pages:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        self._ws = await self._http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        message_id = next(self._ids)
        await self._ws.send_json({"id": message_id, "method": method, "params": params})
        while True:
            message = json.loads((await self._ws.receive(timeout=30)).data)
            if message.get("method") == "Page.javascriptDialogOpening":
                self.prompts.append(message["params"]["message"])
                await self._ws.send_json({"id": next(self._ids), "method": "Page.handleJavaScriptDialog", "params": {
                    "accept": self.prompt_answer is not None, "promptText": self.prompt_answer or ""}})
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        data = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        self.proc.kill()
        self.proc.wait()
