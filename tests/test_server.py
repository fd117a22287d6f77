"""The Wyoming server: describe/info, ping, malformed and unknown events, many clients,
missing weights, graceful shutdown — all against a real server process over TCP."""

from __future__ import annotations

import asyncio
import json
import signal
import time

from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping

from tests.serverproc import ServerProcess, exchange


async def test_describe_lists_asr_tts_handle(server: ServerProcess) -> None:
    (event,) = await exchange(server, [Describe().event()], until="info")
    info = Info.from_event(event)
    assert [p.name for p in info.asr] == ["coda-stt"]
    assert info.asr[0].models[0].name == "kyutai/stt-1b-en_fr"
    assert info.asr[0].models[0].languages == ["en", "fr"]
    assert info.asr[0].models[0].installed
    assert info.asr[0].supports_transcript_streaming
    voices = {v.name for v in info.tts[0].voices}
    assert voices == {"expresso/ex03-ex01_happy_001_channel1_334s.wav", "vctk/p225_023.wav",
                      "cml-tts/fr/2465_1943_000152-0002.wav"}
    assert info.tts[0].supports_synthesize_streaming
    assert info.handle[0].models[0].name == "qwen3:8b"
    assert info.handle[0].supports_handled_streaming


async def test_ping(server: ServerProcess) -> None:
    (event,) = await exchange(server, [Ping(text="hello").event()], until="pong")
    assert event.data["text"] == "hello"


async def test_unknown_event_gets_error_and_connection_lives(server: ServerProcess) -> None:
    events = await exchange(
        server, [Event(type="no-such-event"), Ping(text="still here").event()], until="pong"
    )
    assert [e.type for e in events] == ["error", "pong"]
    assert events[0].data["code"] == "unknown-event"
    assert "no-such-event" in events[0].data["text"]


async def _raw(server: ServerProcess, payload: bytes, reads: int) -> list[dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(payload)
    await writer.drain()
    answers = []
    for _ in range(reads):
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            break
        header = json.loads(line)
        if header.get("data_length"):
            header["data"] = json.loads(await reader.readexactly(header["data_length"]))
        answers.append(header)
    writer.close()
    return answers


async def test_malformed_events_keep_the_connection(server: ServerProcess) -> None:
    ping = b'{"type": "ping", "data": {"text": "ok"}}\n'
    answers = await _raw(
        server,
        b"this is not json\n"
        + b"[1, 2, 3]\n"
        + b'{"data": {}}\n'
        + b'{"type": "ping", "data_length": 5}\nnope!'
        + ping,
        reads=5,
    )
    assert [a["type"] for a in answers] == ["error"] * 4 + ["pong"]
    assert all(a["data"]["code"] == "malformed-event" for a in answers[:4])
    assert answers[-1]["data"]["text"] == "ok"


async def test_oversized_payload_closes_only_that_connection(server: ServerProcess) -> None:
    answers = await _raw(server, b'{"type": "audio-chunk", "payload_length": 4000000000}\n', reads=2)
    assert [a["type"] for a in answers] == ["error"]
    assert answers[0]["data"]["code"] == "payload-too-large"
    (pong,) = await exchange(server, [Ping(text="next").event()], until="pong")
    assert pong.data["text"] == "next"


async def test_many_clients_at_once(server: ServerProcess) -> None:
    async def one(i: int) -> str:
        events = await exchange(server, [Describe().event(), Ping(text=str(i)).event()], until="pong")
        assert [e.type for e in events] == ["info", "pong"]
        return events[-1].data["text"]

    texts = await asyncio.gather(*(one(i) for i in range(20)))
    assert texts == [str(i) for i in range(20)]


async def test_dropped_connection_mid_event_leaves_server_serving(server: ServerProcess) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b'{"type": "audio-chunk", "payload_length": 1000}\n' + b"\0" * 10)
    await writer.drain()
    writer.close()
    (pong,) = await exchange(server, [Ping(text="alive").event()], until="pong")
    assert pong.data["text"] == "alive"


def test_health_reports_loaded_models(server: ServerProcess) -> None:
    status, body = server.http_get("/healthz")
    assert status == 200 and body["ready"] is True
    assert len(body["server_id"]) == 32  # stable across restarts: kept in the data directory
    assert body["mode"] == "hybrid" and body["device"] == "cpu"
    assert {k: v["state"] for k, v in body["models"].items()} == {"stt": "ready", "tts": "ready"}


def test_adaptive_mode_loads_moshi_too(start_server) -> None:
    proc = start_server("--mode", "adaptive")
    _, body = proc.http_get("/healthz")
    assert body["models"]["moshi"] == {
        "state": "ready", "source": "kyutai/moshika-pytorch-bf16", "error": None,
    }


async def test_missing_weights_named_with_the_way_to_provide_them(start_server) -> None:
    proc = start_server("--stt-model", "kyutai/stt-2.6b-en", wait_ready=False)
    error = proc.wait_failed("stt")
    assert "kyutai/stt-2.6b-en" in error and "config.json" in error
    assert "--stt-model DIR" in error and "hf download kyutai/stt-2.6b-en" in error
    assert "Assuming this is a Moshi 7B" not in proc.log()
    # the server still answers, and says the model is not installed
    (event,) = await exchange(proc, [Describe().event()], until="info")
    assert not Info.from_event(event).asr[0].models[0].installed


def test_local_directory_checkpoint(start_server, tiny_hub) -> None:
    proc = start_server("--stt-model", str(tiny_hub["stt"]), "--tts-voices", str(tiny_hub["voices"]))
    _, body = proc.http_get("/healthz")
    assert body["models"]["stt"]["source"] == str(tiny_hub["stt"])


def test_wrong_model_kind_is_a_clear_error(start_server) -> None:
    proc = start_server("--stt-model", "kyutai/tts-1.6b-en_fr", wait_ready=False)
    assert "is a Kyutai 'tts' checkpoint, not 'stt'" in proc.wait_failed("stt")


def test_server_id_survives_a_restart(start_server, tmp_path) -> None:
    first = start_server("--data-dir", str(tmp_path / "kept"))
    server_id = first.http_get("/healthz")[1]["server_id"]
    assert first.terminate() == 0
    second = start_server("--data-dir", str(tmp_path / "kept"))
    assert second.http_get("/healthz")[1]["server_id"] == server_id


def test_sigterm_and_sigint_exit_zero(start_server) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = start_server()
        assert proc.terminate(sig) == 0
        assert "Stopped" in proc.log()


async def test_shutdown_closes_event_streams(start_server) -> None:
    """An open events WebSocket (Home Assistant keeps one) does not hold up a stop."""
    import aiohttp

    proc = start_server()
    async with proc.session() as session, session.ws_connect(
        f"http://127.0.0.1:{proc.http_port}/api/events?metrics_interval=0"
    ) as ws:
        start = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        message = await asyncio.wait_for(ws.receive(), 10)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert proc.terminate() == 0
        assert time.monotonic() - start < 5
