"""A real `wyoming-coda` server process on 127.0.0.1 for tests, and a Wyoming client helper."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m wyoming_coda` with tiny checkpoints, CPU, one thread, loopback only."""

    def __init__(
        self, args: list[str], data_dir: Path, python: str = sys.executable, env: dict[str, str] | None = None
    ) -> None:
        """`python`: the server's interpreter (the Home Assistant tests run from another one);
        `env`: variables added to this process's environment."""
        self.python = python
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.port = free_port()
        self.http_port = free_port()
        self.data_dir = data_dir
        self.args = [
            "--uri", f"tcp://127.0.0.1:{self.port}",
            "--http-host", "127.0.0.1",
            "--http-port", str(self.http_port),
            "--device", "cpu",
            "--data-dir", str(data_dir),
            *args,
        ]
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> None:
        """Start (or start again: same ports, same data dir, so the same server id)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by kill()
        self.proc = subprocess.Popen(
            [self.python, "-m", "wyoming_coda", *self.args],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            status, _ = self.http_get("/healthz")
            if status == 200 or (status and not wait_ready):
                return
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    @property
    def token(self) -> str:
        """The side port's token: the one given with --http-token, else the one the server made
        in its data directory."""
        if "--http-token" in self.args:
            return self.args[self.args.index("--http-token") + 1]
        path = self.data_path / "http-token"
        return path.read_text().strip() if path.is_file() else ""

    @property
    def data_path(self) -> Path:
        """The data directory the server uses: the last --data-dir given (a test may pass its own)."""
        return Path(self.args[len(self.args) - self.args[::-1].index("--data-dir")])

    def signed(self, text: str, context: dict | None) -> dict:
        """`context` with the proof of the server's token a handle request carries to get a
        user's memory and personality (as the Coda integration signs it)."""
        from wyoming_coda.access import sign_request

        return sign_request(self.token, text, context or {})

    def session(self) -> aiohttp.ClientSession:
        """An HTTP client that shows the server's token (WebSockets included)."""
        return aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"})

    def http_get(self, path: str, token: str | None = None) -> tuple[int | None, dict | None]:
        """(status, JSON body) of a GET on the side port; (None, None) when it does not answer."""
        status, body = self.http_fetch(path, token)
        return status, json.loads(body) if body else None

    def http_fetch(self, path: str, token: str | None = None) -> tuple[int | None, bytes]:
        """A GET with the server's token (`token`: another one; "" for none)."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, b""

    def wait_failed(self, kind: str, timeout: float = 30.0) -> str:
        """Wait until the `kind` model failed to load; returns its error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.http_get("/healthz")
            if body and body["models"][kind]["state"] == "failed":
                assert status == 503
                return body["models"][kind]["error"]
            time.sleep(0.1)
        raise TimeoutError(f"{kind} model did not fail:\n{self.log()}")

    @property
    def server_id(self) -> str:
        """The stable id the server keeps in its data directory."""
        return (self.data_path / "server_id").read_text().strip()

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self._log.close()


async def exchange(proc: ServerProcess, events: list[Event], until: str, timeout: float = 10.0) -> list[Event]:
    """Send `events` on a new connection, collect answers until one of type `until`."""
    received: list[Event] = []
    async with proc.client() as client:
        for event in events:
            await client.write_event(event)
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout)
            assert event is not None, f"connection closed; got {[e.type for e in received]}"
            received.append(event)
            if event.type == until:
                return received
