"""A real Coda Voice server for Home Assistant's tests: started from the server's own
environment (.venv, Python 3.11 with torch and moshi) on 127.0.0.1, with tiny random-weight
Kyutai checkpoints and the Ollama API test double as its LLM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_PYTHON = ROOT / ".venv" / "bin" / "python"


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


@dataclass
class CodaServer:
    port: int
    http_port: int
    proc: subprocess.Popen[bytes]


@pytest.fixture
async def ollama(socket_enabled) -> AsyncIterator[object]:
    """The Ollama API test double (tests/ollama_double.py) in this event loop."""
    from tests.ollama_double import OllamaDouble

    double = OllamaDouble()
    await double.start()
    yield double
    await double.close()


@pytest.fixture
def coda_server(tiny_hub_cache: str, ollama, tmp_path: Path, socket_enabled) -> Iterator[CodaServer]:
    port, http_port = _free_port(), _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": tiny_hub_cache, "NO_TORCH_COMPILE": "1",
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [str(SERVER_PYTHON), "-m", "wyoming_coda", "--uri", f"tcp://127.0.0.1:{port}", "--http-host", "127.0.0.1",
         "--http-port", str(http_port), "--device", "cpu", "--data-dir", str(tmp_path / "data"),
         "--llm-url", ollama.url],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as response:
                if json.loads(response.read())["ready"]:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp_path / "server.log").read_text())
        time.sleep(0.1)
    yield CodaServer(port, http_port, proc)
    proc.terminate()
    proc.wait(15)
    log.close()
