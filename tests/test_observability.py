"""Metrics registry, /metrics (parsed back with prometheus_client), /api/analytics, bearer
token protection and VRAM budgets — against a real server process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ollama_double import OllamaDouble, Reply
from tests.serverproc import ServerProcess
from tests.test_handle import TURN_ON, config_file, handle_turn
from tests.wyoming_io import transcribe


def samples(server: ServerProcess, token: str | None = None) -> dict[tuple[str, tuple], float]:
    status, body = server.http_fetch("/metrics", token)
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_metrics_follow_a_scripted_conversation(start_server, ollama: OllamaDouble, speech_dir: Path) -> None:
    server = start_server("--llm-url", ollama.url)
    before = samples(server)
    assert before[("coda_turns_total", ())] == 0
    async with server.client() as client:
        await transcribe(client, speech_dir / "pause.wav")
    ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "kitchen"})]), Reply(text="Done.")]
    await handle_turn(server, "turn on the kitchen light", context={"tools": [TURN_ON]},
                      answer_tool=lambda call: {"result": "ok"})
    ollama.script = [Reply(text="Oops", error_midstream=True)]
    await handle_turn(server, "tell me more")
    after = samples(server)
    assert after[("coda_conversations_total", ())] == 2
    assert after[("coda_turns_total", ())] == 2
    assert after[("coda_tool_calls_total", (("result", "ok"),))] == 1
    assert after[("coda_errors_total", (("kind", "llm-error"),))] == 1
    assert after[("coda_routes_total", (("route", "llm"),))] == 2
    assert after[("coda_stage_latency_seconds_count", (("stage", "stt_final"),))] == 1
    assert after[("coda_stage_latency_seconds_count", (("stage", "vad_end_of_speech"),))] == 1
    assert after[("coda_stage_latency_seconds_count", (("stage", "llm_first_token"),))] == 2
    assert after[("coda_connections", (("kind", "wyoming"),))] == 0  # all closed again
    assert after[("coda_batch_occupancy", (("engine", "stt"),))] == 0
    assert after[("coda_queue_depth", (("engine", "tts"),))] == 0
    assert after[("coda_vram_bytes", (("component", "stt"), ("kind", "weights")))] > 0
    assert after[("coda_process_rss_bytes", ())] > 50 << 20
    assert -60 < after[("coda_audio_quality", (("indicator", "level_dbfs"),))] < 0
    assert 0 < after[("coda_audio_quality", (("indicator", "speech_ratio"),))] < 1
    assert after[("coda_audio_quality", (("indicator", "snr_db"),))] > 10  # espeak over digital silence


async def test_analytics_json(start_server, ollama: OllamaDouble, speech_dir: Path) -> None:
    server = start_server("--llm-url", ollama.url)
    async with server.client() as client:
        await transcribe(client, speech_dir / "s1.wav")
    await handle_turn(server, "hello")
    status, data = server.http_get("/api/analytics")
    assert status == 200
    expected = {"total_conversations": int, "active_conversations": int, "total_turns": int,
                "average_latency_ms": (float, type(None)), "latency_ms": dict, "routes": dict,
                "tool_calls": dict, "errors": dict, "interruptions": int, "connections": int,
                "vram_usage": dict, "audio_quality": dict, "models": dict, "mode": str, "llm": dict}
    assert set(data) == set(expected)
    assert all(isinstance(data[k], t) for k, t in expected.items())
    assert data["total_conversations"] == 1 and data["total_turns"] == 1
    stt = data["latency_ms"]["stt_final"]
    assert set(stt) == {"count", "mean", "p50", "p95"} and stt["count"] == 1 and 0 < stt["p50"] <= stt["p95"]
    vram = data["vram_usage"]
    assert vram["device"] == "cpu" and vram["rss_bytes"] > 0
    assert set(vram["components"]) == {"stt", "tts", "external_llm"}
    assert vram["components"]["stt"]["weights_bytes"] > 0 and vram["components"]["stt"]["rss_bytes"] >= 0
    assert set(data["audio_quality"]) == {"level_dbfs", "clipping_ratio", "snr_db", "speech_ratio"}
    assert data["llm"]["provider"] == "ollama" and data["llm"]["model"] == "qwen3:8b" and data["llm"]["healthy"]
    # reachability: checked against the LLM server in the background (None until the first check)
    for _ in range(50):
        if server.http_get("/api/analytics")[1]["llm"]["reachable"]:
            break
        await asyncio.sleep(0.1)
    assert server.http_get("/api/analytics")[1]["llm"]["reachable"] is True


async def test_llm_reachability_follows_the_llm_server(start_server, ollama: OllamaDouble) -> None:
    server = start_server("--llm-url", ollama.url, "--llm-model", "not-installed:1b")
    for _ in range(50):
        if server.http_get("/api/analytics")[1]["llm"]["reachable"] is not None:
            break
        await asyncio.sleep(0.1)
    assert server.http_get("/api/analytics")[1]["llm"]["reachable"] is False  # the model is missing


async def test_bearer_token_protects_the_side_port(start_server) -> None:
    server = start_server("--http-token", "s3cret-token")
    assert server.http_fetch("/metrics", token="")[0] == 401
    assert server.http_fetch("/api/analytics", token="wrong-token")[0] == 401
    assert server.http_fetch("/metrics", token="s3cret-token")[0] == 200
    assert server.http_fetch("/api/analytics", token="s3cret-token")[0] == 200
    assert server.http_fetch("/healthz")[0] == 200  # health stays open for watchdogs


async def test_vram_budget_smaller_than_the_model_is_a_clear_error(start_server, tmp_path: Path) -> None:
    server = start_server("--config", config_file(tmp_path, voice_processing={"stt": {"vram_allocation": "100KB"}}),
                          wait_ready=False)
    error = server.wait_failed("stt")
    assert error.startswith("the stt model needs about ") and "vram_allocation budget of 0.1 MiB" in error
    _, data = server.http_get("/api/analytics")
    assert data["vram_usage"]["components"]["stt"]["budget_bytes"] == 100 << 10


async def test_events_websocket_can_be_switched_off(start_server, tmp_path: Path) -> None:
    server = start_server("--config", config_file(tmp_path, integration={"websocket_events": False}))
    assert server.http_fetch("/api/events")[0] == 404
    assert server.http_fetch("/api/analytics")[0] == 200


async def test_https_side_port_with_a_self_signed_certificate(start_server) -> None:
    """The fingerprint printed at start is the certificate served, and it survives a restart."""
    import re

    import aiohttp

    from tests.serverproc import free_port

    https_port = free_port()
    server = start_server("--http-self-signed", "--https-port", str(https_port))

    def printed() -> str:
        return re.findall(r"SHA-256 fingerprint ([0-9A-F:]{95})", server.log())[-1]

    async def health(fingerprint: str) -> int:
        pin = aiohttp.Fingerprint(bytes.fromhex(fingerprint.replace(":", "")))
        async with aiohttp.ClientSession() as http, http.get(f"https://127.0.0.1:{https_port}/healthz",
                                                             ssl=pin) as response:
            return response.status

    first = printed()
    assert await health(first) == 200
    assert server.http_fetch("/healthz")[0] == 200  # the plain side port stays for Home Assistant
    server.terminate()
    server.start()
    assert printed() == first and await health(first) == 200
