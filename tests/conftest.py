"""Shared fixtures: tiny Kyutai checkpoints in an offline HF cache, real server processes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before torch / moshi / huggingface_hub are imported anywhere in the test process.
os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = HF_CACHE = tempfile.mkdtemp(prefix="coda-hf-cache-")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from tests.serverproc import ServerProcess
from tests.tinykit import build_tiny_hub

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny checkpoints registered under the real Kyutai repo ids in the offline cache."""
    return build_tiny_hub(tmp_path_factory.mktemp("tiny-ckpt"), Path(HF_CACHE))


@pytest.fixture
def start_server(tiny_hub: dict[str, Path], tmp_path: Path):
    """Start real server processes (`python -m wyoming_coda ...`); stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, wait_ready: bool = True, env: dict[str, str] | None = None) -> ServerProcess:
        proc = ServerProcess(list(args), data_dir=tmp_path / f"data{len(started)}", env=env)
        started.append(proc)
        proc.start(wait_ready=wait_ready)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture(scope="session")
def server(tiny_hub: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """One shared server with the default (hybrid) configuration on tiny checkpoints."""
    proc = ServerProcess([], data_dir=tmp_path_factory.mktemp("shared-data"))
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng sentences at 16 kHz mono (0.7 s of silence after, as Home Assistant's end of
    speech leaves), one at 44.1 kHz stereo, one with a 1.5 s pause after, and 3 s of silence."""
    from tests.speech import SENTENCES, make_silence, make_speech

    out = tmp_path_factory.mktemp("speech")
    for i, text in enumerate(SENTENCES):
        make_speech(out / f"s{i}.wav", text, silence_after=0.7)
        (out / f"s{i}.txt").write_text(text + "\n")
    make_speech(out / "stereo44k.wav", SENTENCES[0], rate=44100, channels=2, silence_after=0.7)
    make_speech(out / "pause.wav", SENTENCES[0], silence_after=1.5)  # > the 1 s VAD silence
    make_silence(out / "silence.wav", 3.0)
    return out


@pytest.fixture
async def ollama():
    """The Ollama API test double on 127.0.0.1 (see tests/ollama_double.py)."""
    from tests.ollama_double import OllamaDouble

    double = OllamaDouble()
    await double.start()
    yield double
    await double.close()
