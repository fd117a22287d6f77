"""The third-party `wyoming-bench` client against our server: it completes, and it sees the
streaming flags we advertise (it picks the streaming paths only when they are advertised)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.serverproc import ServerProcess

BENCH = str(Path(sys.executable).with_name("wyoming-bench"))


def bench(*args: str) -> str:
    result = subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_info(server: ServerProcess) -> None:
    out = bench("info", f"127.0.0.1:{server.port}")
    assert "coda-stt (transcript streaming)" in out
    assert "coda-tts (synthesize streaming)" in out
    assert "voice vctk/p225_023.wav [en, fr]" in out


def test_tts(server: ServerProcess) -> None:
    out = bench("tts", f"127.0.0.1:{server.port}", "--rounds", "1", "--warmup", "0",
                "--texts", "Hello there, how are you?")
    assert "coda-tts - non-streaming, streaming" in out
    assert "[non_streaming] ok=1 fail=0" in out and "[streaming] ok=1 fail=0" in out


def test_stt(server: ServerProcess, speech_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("s0", "s1", "s2"):
        for ext in (".wav", ".txt"):
            (corpus / f"{name}{ext}").symlink_to(speech_dir / f"{name}{ext}")
    out = bench("stt", f"127.0.0.1:{server.port}", "--corpus", str(corpus), "--rounds", "1", "--warmup", "0")
    assert "coda-stt - non-streaming, streaming" in out
    assert "[non_streaming] ok=3 fail=0" in out and "[streaming] ok=3 fail=0" in out
