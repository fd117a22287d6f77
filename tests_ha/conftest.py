"""Home Assistant's own code against a real Coda Voice server: the server runs from its own
environment (.venv, Python 3.11 with torch and moshi) on 127.0.0.1, with tiny random-weight
Kyutai checkpoints and the Ollama API test double (tests/ollama_double.py) as its LLM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

import custom_components  # noqa: F401 - ours, imported before the plugin's testing_config can shadow it

ROOT = Path(__file__).resolve().parent.parent
SERVER_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(autouse=True)
async def core_setup(hass: HomeAssistant, enable_custom_integrations: None) -> None:
    """Load custom_components/coda, and Home Assistant's core integration (exposed entities),
    which conversation agents need."""
    assert await async_setup_component(hass, "homeassistant", {})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_hub_cache() -> str:
    """An offline Hugging Face cache with the tiny checkpoints under the real repo ids."""
    cache = tempfile.mkdtemp(prefix="coda-ha-hf-")
    code = ("import sys; from pathlib import Path; from tests.tinykit import build_tiny_hub; "
            "build_tiny_hub(Path(sys.argv[1]), Path(sys.argv[2]))")
    subprocess.run([str(SERVER_PYTHON), "-c", code, tempfile.mkdtemp(prefix="coda-ha-ckpt-"), cache],
                   cwd=ROOT, check=True, env={**os.environ, "NO_TORCH_COMPILE": "1"})
    return cache


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken request, 16 kHz mono as Home Assistant sends it (espeak-ng + sox)."""
    out = tmp_path_factory.mktemp("speech")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out / "raw.wav"),
                    "hello, please turn on the kitchen light"], check=True)
    subprocess.run(["sox", str(out / "raw.wav"), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(out / "speech.wav"), "pad", "0", "0.7"], check=True)
    return out / "speech.wav"


class CodaServer:
    """A real server process; it can be stopped and started again on the same ports and data
    directory (so with the same server id)."""

    def __init__(self, hub_cache: str, llm_url: str, workdir: Path, *args: str) -> None:
        self.port = _free_port()
        self.http_port = _free_port()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.args = [*args, "--llm-url", llm_url]
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": hub_cache, "NO_TORCH_COMPILE": "1",
                    "OMP_NUM_THREADS": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(SERVER_PYTHON), "-m", "wyoming_coda", "--uri", f"tcp://127.0.0.1:{self.port}",
                 "--http-host", "127.0.0.1", "--http-port", str(self.http_port), "--device", "cpu",
                 "--data-dir", str(self.data_dir), *self.args],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self.health().get("ready"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.log_path.read_text())
            time.sleep(0.1)

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            return {}

    @property
    def server_id(self) -> str:
        return (self.data_dir / "server_id").read_text().strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None


@pytest.fixture
async def ollama(socket_enabled: None) -> AsyncIterator[Any]:
    """The Ollama API test double in this event loop."""
    from tests.ollama_double import OllamaDouble

    double = OllamaDouble()
    await double.start()
    yield double
    await double.close()


@pytest.fixture
def coda_server_factory(
    tiny_hub_cache: str, ollama: Any, tmp_path: Path, socket_enabled: None
) -> Iterator[Any]:
    """Start servers with extra command-line arguments; all are stopped after the test."""
    servers: list[CodaServer] = []

    def start(*args: str) -> CodaServer:
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        server = CodaServer(tiny_hub_cache, ollama.url, workdir, *args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def coda_server(coda_server_factory: Any) -> CodaServer:
    return coda_server_factory()
