"""Configuration file, schema errors and the command line (real `wyoming-coda` processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.serverproc import ROOT
from wyoming_coda.__main__ import build_parser, resolve_config
from wyoming_coda.config import ConfigError, config_from_dict, load_config, parse_size

SPEC_EXAMPLE = """
voice_processing:
  mode: "hybrid"
  moshi:
    model_path: "kyutai/moshika-pytorch-bf16"
    vram_allocation: "8GB"
    external_llm_enabled: true
  external_llm:
    provider: "ollama"
    model: "llama3.1:70b-instruct-q4_K_M"
    vram_allocation: "20GB"
    parallel_processing: true
audio:
  sample_rate: 24000
  channels: 1
  format: "wav"
  vad_enabled: true
  vad_threshold: 0.5
  silence_duration_ms: 1000
  noise_reduction: true
  echo_cancellation: true
  auto_gain_control: true
integration:
  memory_enabled: true
  personality_enabled: true
  tools_enabled: true
  websocket_events: true
  memory_context_limit: 5
  personality_adaptation: true
  tool_calling_during_speech: true
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wyoming_coda", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_spec_yaml_sections_load(tmp_path: Path) -> None:
    path = tmp_path / "coda.yaml"
    path.write_text(SPEC_EXAMPLE)
    config = load_config(path)
    assert config.mode == "hybrid"
    assert config.external_llm.model == "llama3.1:70b-instruct-q4_K_M"
    assert config.moshi.vram_allocation == "8GB"
    assert config.audio.vad_threshold == 0.5 and config.audio.silence_duration_ms == 1000
    assert config.integration.memory_context_limit == 5


def test_defaults_are_the_real_models() -> None:
    config = config_from_dict({})
    assert config.stt.model == "kyutai/stt-1b-en_fr"
    assert config.tts.model == "kyutai/tts-1.6b-en_fr"
    assert config.moshi.model_path == "kyutai/moshika-pytorch-bf16"
    assert config.external_llm.provider == "ollama"
    assert config.server.uri == "tcp://0.0.0.0:10300"
    # no budget unless the user sets one: Moshi's 15.4 GB of bf16 weights load where they fit
    assert [c.vram_allocation for c in (config.stt, config.tts, config.moshi)] == [None, None, None]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"voice_processing": {"mode": "turbo"}}, "voice_processing.mode: value must be one of"),
        ({"server": {"http_cert": "/etc/coda/cert.pem"}}, "server.http_cert and server.http_key: give both"),
        ({"audio": {"vad_threshold": 1.5}}, "audio.vad_threshold: value must be at most 1"),
        ({"voice_processing": {"moshi": {"vram_allocation": "lots"}}},
         "voice_processing.moshi.vram_allocation: expected a size"),
        ({"integration": {"memory_enabled": "maybe"}}, "integration.memory_enabled: expected bool"),
        ({"audio": {"bogus": 1}}, "audio.bogus: unknown key"),
        ({"server": {"uri": "http://x"}}, "server.uri: expected tcp://HOST:PORT or unix://PATH"),
    ],
)
def test_schema_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert str(err.value).startswith(message)


def test_sizes() -> None:
    assert parse_size("8GB") == 8 << 30
    assert parse_size("512 MiB") == 512 << 20


def test_flags_override_file(tmp_path: Path) -> None:
    path = tmp_path / "coda.yaml"
    path.write_text(SPEC_EXAMPLE)
    args = build_parser().parse_args(
        ["--config", str(path), "--mode", "adaptive", "--llm-model", "qwen3:4b", "--debug"]
    )
    config = resolve_config(args)
    assert config.mode == "adaptive"
    assert config.external_llm.model == "qwen3:4b"
    assert config.external_llm.vram_allocation == "20GB"  # from the file
    assert config.server.debug


def test_help_lists_the_flags() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for flag in ("--uri", "--zeroconf", "--data-dir", "--device", "--stt-model", "--tts-model",
                 "--tts-voice", "--moshi-model", "--mode", "--llm-url", "--llm-model",
                 "--http-port", "--config", "--debug", "--log-format", "--version"):
        assert flag in result.stdout


def test_version() -> None:
    from wyoming_coda import __version__

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == __version__ != "0.0.0"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("voice_processing:\n  mode: turbo\n", "voice_processing.mode: value must be one of"),
        ("audio: [1, 2\n", "is not valid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping"),
    ],
)
def test_bad_config_file_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = cli("--config", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = cli("--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr


def test_bad_flag_value_is_one_clear_line() -> None:
    result = cli("--http-port", "70000")
    assert result.returncode == 2
    assert result.stderr.strip() == "wyoming-coda: config error: server.http_port: value must be at most 65535"


def test_json_log_format(start_server) -> None:
    import json

    proc = start_server("--log-format", "json")
    first = json.loads(proc.log().splitlines()[0])
    assert first["level"] == "INFO" and "Coda Voice" in first["message"]


async def test_unix_socket_and_no_http(tmp_path: Path, tiny_hub) -> None:
    import asyncio

    from wyoming.client import AsyncClient
    from wyoming.info import Describe, Info

    sock = tmp_path / "coda.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wyoming_coda", "--uri", f"unix://{sock}", "--http-port", "0",
         "--device", "cpu", "--data-dir", str(tmp_path / "d")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        async with AsyncClient.from_uri(f"unix://{sock}") as client:
            await client.write_event(Describe().event())
            event = await asyncio.wait_for(client.read_event(), 10)
        assert Info.from_event(event).asr[0].name == "coda-stt"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    assert not sock.exists()


def test_configuration_reference_is_current() -> None:
    from wyoming_coda.config import config_reference

    assert (ROOT / "docs" / "configuration.md").read_text() == config_reference(), (
        "regenerate: python -m wyoming_coda.config > docs/configuration.md"
    )


async def test_llm_can_be_switched_off_only_where_no_turn_needs_it() -> None:
    from wyoming_coda.config import ConfigError, config_from_dict
    from wyoming_coda.llm import create_backend
    from wyoming_coda.llm.base import LLMError

    with pytest.raises(ConfigError, match="external_llm_enabled: false needs mode moshi_only"):
        config_from_dict({"voice_processing": {"moshi": {"external_llm_enabled": False}}})
    config = config_from_dict({"voice_processing": {"mode": "moshi_only", "moshi": {"external_llm_enabled": False}}})
    llm = create_backend(config.external_llm, config.moshi.external_llm_enabled)
    with pytest.raises(LLMError) as err:
        async for _ in llm.chat([{"role": "user", "content": "hi"}]):
            pass
    assert err.value.code == "llm-disabled" and llm.name == "none"
