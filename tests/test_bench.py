"""Every `script/bench` subcommand as a short smoke run, through the same command a person
types: it completes and prints its table, which is parsed (no timing is asserted: speed
targets live in the benchmarks themselves, as ratios against a baseline of the same run)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.serverproc import ROOT

NUMBER = r"(?:\d+\.\d+|nan)"


def bench(*args: str, timeout: float = 900) -> str:
    result = subprocess.run([str(ROOT / "script" / "bench"), *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.timeout(900)
def test_speech() -> None:
    """Against wyoming-faster-whisper and wyoming-piper (installed by the bench on first use)."""
    out = bench("speech", "--rounds", "1", "--clients", "1,2")
    assert re.search(rf"0\.7 s silence tail \(Home Assistant\)\s+{NUMBER} ms\s+{NUMBER} ms\s+ratio\s+{NUMBER}", out)
    assert re.search(rf"one sentence\s+{NUMBER} ms\s+{NUMBER} ms\s+ratio", out)
    for server in ("stt coda", "stt faster-whisper", "tts coda", "tts piper"):
        assert re.search(rf"{server}\s+{NUMBER}s\s+{NUMBER}s\s+{NUMBER}x", out), server
    assert re.search(rf"coda / peer wall time at 2 clients: stt {NUMBER}, tts {NUMBER}", out)


@pytest.mark.timeout(900)
def test_assist() -> None:
    """Through a real Home Assistant (the current release's test environment), with the peers."""
    out = bench("assist", "--rounds", "1")
    for row in ("Coda, server end of turn \\(head\\)", "Coda, server end of turn \\(VAD only\\)",
                "Coda, Home Assistant's timer", "faster-whisper \\+ piper, HA's timer"):
        assert re.search(rf"{row}\s+-?\d+\s+-?\d+\s+-?\d+\s+{NUMBER}", out), row
    assert re.search(rf"server end of turn / Home Assistant's timer \(first audio\)\s+{NUMBER}", out)


@pytest.mark.timeout(300)
def test_soak() -> None:
    """The suite's 60 s soak: mixed clients, no errors, nothing left open."""
    out = bench("soak", "--clients", "4", "--seconds", "60", "--warmup", "10")
    assert re.search(r"^\s+errors\s+0$", out, re.MULTILINE), out
    assert re.search(r"close_wait\s+\d+ -> 0$", out, re.MULTILINE), out
    for kind in ("stt", "tts", "handle", "duplex"):
        assert re.search(rf"^\s+{kind}\s+m0:\s+{NUMBER} /\s+{NUMBER}", out, re.MULTILINE), kind
    assert re.search(rf"growth [+-]{NUMBER} %", out)


@pytest.mark.timeout(600)
def test_conversation() -> None:
    """Through the public API, with the real SmolLM2 on embedded llama.cpp."""
    out = bench("conversation", "--rounds", "1")
    for label in ("STT final transcript after end of speech", "LLM first token", "LLM first sentence",
                  "TTS first audio", r"voice-to-voice \(end of speech -> first audio\)"):
        assert re.search(rf"{label}.*\s{NUMBER}$", out, re.MULTILINE), label
    assert re.search(rf"voice-to-voice / LLM alone\s+{NUMBER}", out)
    assert re.search(rf"end of speech -> Moshi's first audio\s+{NUMBER}", out)
    assert re.search(rf"moshi_only / hybrid voice-to-voice\s+{NUMBER}", out)


@pytest.mark.timeout(600)
def test_duplex() -> None:
    out = bench("duplex", "--seconds", "1", "--sessions", "1,2")
    rows = re.findall(rf"^\s+(\d+)\s+{NUMBER} ms\s+{NUMBER}\s+{NUMBER}\s+{NUMBER} ms\s+(within|OVER)", out,
                      re.MULTILINE)
    assert [r[0] for r in rows] == ["1", "2"], out
    for stage in ("resample 24k->16k", "echo cancellation", "noise suppression \\+ gain", "silero vad"):
        assert re.search(rf"{stage}\s+{NUMBER}", out), stage
    assert re.search(rf"end of question -> Moshi says the LLM's first word\s+{NUMBER} ms", out)
    assert re.search(rf"LLM alone, first token \(same messages, cached\)\s+{NUMBER} ms", out)


@pytest.mark.timeout(600)
def test_vram() -> None:
    out = bench("vram", "--device", "cpu")
    assert "Memory per component on cpu (tiny checkpoints)" in out
    for component in ("stt", "tts", "moshi", "external_llm"):
        assert re.search(rf"^\s+{component}\s+(ready|external)\s", out, re.MULTILINE), component


@pytest.mark.timeout(600)
def test_scale(tmp_path: Path) -> None:
    """The scale bench's CPU / tiny run: every section runs, prints its table and writes its JSON."""
    report = tmp_path / "scale.json"
    out = bench("scale", "--device", "cpu", "--sizes", "tiny", "--threads", "1", "--json", str(report))
    for engine in ("stt", "tts", "moshi", "moshi-writing"):
        for batch in ("1", "4"):
            assert re.search(rf"^\s+{engine}\s+batch\s+{batch}\s+step\s+{NUMBER} ms .* RTF {NUMBER}", out,
                             re.MULTILINE), (engine, batch)
    assert re.search(r"Real-time streams .*: stt \d+, moshi \d+", out)
    for concurrent in (1, 4):
        assert re.search(rf"TTS first audio,\s+{concurrent} at once: p50 {NUMBER} s", out)
    for precision in ("fp32", "int8"):
        assert re.search(rf"CPU STT {precision}, 1 threads: {NUMBER} ms per 80 ms frame", out), precision
    results = json.loads(report.read_text())
    assert results["sizes"] == "tiny" and not results["cuda"]
    assert {row["engine"] for row in results["steps"]} == {"stt", "tts", "moshi", "moshi-writing"}
    assert all(row["steps"] >= 2 and row["rtf"] > 0 for row in results["steps"])
    assert [row["concurrent"] for row in results["tts_first_audio"]] == [1, 4]
    assert [(row["threads"], row["int8"]) for row in results["cpu"]] == [(1, False), (1, True)]


def test_scale_checkpoint_cache(tmp_path: Path) -> None:
    """With `--cache`, the checkpoints are written once and loaded back through moshi's loaders."""
    args = ("scale", "--engines", "stt", "--batches", "1", "--threads=", "--cache", str(tmp_path))
    first = bench(*args)
    files = {p.name for p in (tmp_path / "stt-tiny").iterdir()}
    assert {"config.json", "model.safetensors", "mimi.safetensors", "tokenizer.model"} <= files
    assert "writing stt checkpoint" in first
    second = bench(*args)
    assert "writing stt checkpoint" not in second
    assert re.search(rf"^\s+stt\s+batch\s+1\s+step\s+{NUMBER} ms", second, re.MULTILINE)


def test_real_sizes_match_the_published_ones() -> None:
    """The scale bench's real-size checkpoints, counted on PyTorch's meta device (no memory): each
    LM within 2 % of its published size, Mimi at its 79 M."""
    import torch
    from moshi.models import loaders

    from tests import tinykit

    for kind, published in tinykit.PUBLISHED_PARAMETERS.items():
        config = tinykit.real_config(kind)
        lm = loaders.get_moshi_lm(None, lm_kwargs=tinykit.lm_kwargs(config), device="meta", dtype=torch.bfloat16)
        count = sum(p.numel() for p in lm.parameters())
        assert abs(count / published - 1) < 0.02, (kind, count)
    mimi = loaders.get_mimi(None, tinykit.REAL_MIMI_CONFIG, device="meta")
    assert round(sum(p.numel() for p in mimi.parameters()) / 1e6) == 79
