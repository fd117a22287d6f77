"""Secure by default (docs/security.md), each rule against a real server started with nothing
but its ports and a data directory: the token on every route and WebSocket, browsers only from
the server's own pages, nobody starving the others, names that are never paths, no private data
on the Wyoming port without the token's proof, and private files."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart
from wyoming.event import Event
from wyoming.ping import Ping
from wyoming.tts import Synthesize, SynthesizeVoice

from tests.ollama_double import OllamaDouble, Reply
from tests.serverproc import ServerProcess
from tests.test_handle import config_file, handle_turn

OPEN = {"/healthz", "/", "/api/challenge?nonce=0123456789abcdef0123"}
ROUTES = [  # (method, path): every route of the side port
    ("GET", "/healthz"), ("GET", "/"), ("GET", "/api/challenge?nonce=0123456789abcdef0123"),
    ("GET", "/api/analytics"), ("GET", "/metrics"), ("GET", "/api/memory"), ("GET", "/api/memory/household"),
    ("DELETE", "/api/memory/household/1"), ("DELETE", "/api/memory/household"), ("POST", "/api/heard"),
]
SOCKETS = ["/api/events?metrics_interval=0", "/api/home", "/api/duplex?format=pcm"]
EVIL = "http://evil.example"


@pytest.fixture
def plain_server(start_server) -> ServerProcess:
    """Started as `script/run` starts it: no token given, no allow-list beyond the default."""
    return start_server("--duplex")


async def _status(server: ServerProcess, method: str, path: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{server.http_port}{path}", headers=headers) as response:
        return response.status


async def _socket(server: ServerProcess, path: str, headers: dict[str, str]) -> int:
    """101 when the WebSocket opens, else the refusal's status."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(f"http://127.0.0.1:{server.http_port}{path}", headers=headers)
        except aiohttp.WSServerHandshakeError as err:
            return err.status
        await ws.close()
        return 101


def _cases(server: ServerProcess) -> list[tuple[str, dict[str, str], bool]]:
    """(what, headers, whether a route that needs the token lets it in)."""
    token = {"Authorization": f"Bearer {server.token}"}
    own = f"http://127.0.0.1:{server.http_port}"
    return [
        ("no token", {}, False),
        ("a wrong token", {"Authorization": "Bearer not-the-token"}, False),
        ("the token", token, True),
        ("the token, from the server's own page", {**token, "Origin": own}, True),
        ("the token, from a foreign page", {**token, "Origin": EVIL}, False),
        ("the token, by a rebound name", {**token, "Origin": f"{EVIL}:{server.http_port}",
                                          "Host": f"evil.example:{server.http_port}"}, False),
        ("the token, a foreign Host without Origin (not a browser)", {**token, "Host": "coda.lan"}, True),
    ]


async def test_every_route_and_socket_wants_the_token_and_a_known_origin(plain_server: ServerProcess) -> None:
    server = plain_server
    for what, headers, lets_in in _cases(server):
        browser_refused = "Origin" in headers and not lets_in
        for method, path in ROUTES:
            status = await _status(server, method, path, headers)
            if browser_refused:
                assert status == 403, (what, method, path, status)
            elif path in OPEN:
                assert status in (200, 503), (what, method, path, status)
            elif lets_in:
                assert status not in (401, 403), (what, method, path, status)
            else:
                assert status == 401, (what, method, path, status)
        for path in SOCKETS:
            status = await _socket(server, path, headers)
            expected = 101 if lets_in else 403 if browser_refused else 401
            assert status == expected, (what, path, status)


async def test_health_says_little_without_the_token_and_the_token_stays_private(plain_server: ServerProcess) -> None:
    server = plain_server
    status, body = server.http_get("/healthz", token="")
    assert status == 200 and body == {"ready": True, "server_id": server.server_id}
    assert "models" in server.http_get("/healthz")[1]
    token_file = server.data_dir / "http-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert len(server.token) >= 32 and str(token_file) in server.log() and server.token not in server.log()
    server.kill()  # a restart keeps the token
    before = server.token
    server.start()
    assert server.token == before and server.http_get("/api/analytics")[0] == 200


async def test_metrics_public_opens_metrics_alone(start_server) -> None:
    server = start_server("--metrics-public")
    assert server.http_fetch("/metrics", token="")[0] == 200
    assert server.http_fetch("/api/analytics", token="")[0] == 401


async def test_the_identity_challenge_proves_the_token_without_sending_it(plain_server: ServerProcess) -> None:
    from wyoming_coda.access import proof

    nonce = "a1b2c3d4e5f60718293a4b5c"
    status, body = plain_server.http_get(f"/api/challenge?nonce={nonce}", token="")
    assert status == 200 and body["server_id"] == plain_server.server_id
    assert body["proof"] == proof(plain_server.token, "challenge", nonce, plain_server.server_id)
    assert plain_server.token not in json.dumps(body)
    assert plain_server.http_fetch("/api/challenge?nonce=short", token="")[0] == 400


async def _read_until(client: Any, types: set[str], timeout: float) -> Event:
    async with asyncio.timeout(timeout):
        while (event := await client.read_event()) is not None:
            if event.type in types:
                return event
    raise AssertionError("connection closed")


async def test_silent_clients_cannot_starve_the_others(start_server, tmp_path: Path, speech_dir: Path) -> None:
    """Every STT row held by clients that send audio-start and nothing else: another client
    gets `busy` within the row wait; the silent ones lose their rows after the idle bound, and
    a command is served again."""
    from tests.wyoming_io import transcribe

    cfg = config_file(tmp_path, voice_processing={"stt": {"batch_size": 2}},
                      server={"row_wait_seconds": 1.0, "stream_idle_seconds": 3.0})
    server = start_server("--config", cfg)
    silent = [server.client() for _ in range(2)]
    for client in silent:
        await client.connect()
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        await _read_until(client, {"transcript-start"}, 10)
    started = time.monotonic()
    async with server.client() as late:
        await late.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        await late.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=b"\0" * 3200).event())
        busy = await _read_until(late, {"error", "transcript-start"}, 10)
    assert busy.type == "error" and busy.data["code"] == "busy" and time.monotonic() - started < 5
    for client in silent:
        idle = await _read_until(client, {"error"}, 10)
        assert idle.data["code"] == "stream-idle"
        await client.disconnect()
    async with server.client() as client:
        result = await transcribe(client, speech_dir / "s0.wav")
    assert result.text


async def test_connections_per_client_and_idle_connections_are_bounded(start_server, tmp_path: Path) -> None:
    cfg = config_file(tmp_path, server={"max_client_connections": 2, "idle_connection_seconds": 1.5})
    server = start_server("--config", cfg)
    held = [server.client() for _ in range(2)]
    for client in held:
        await client.connect()
        await client.write_event(Ping().event())
    async with server.client() as third:
        await third.write_event(Event("describe"))
        assert await asyncio.wait_for(third.read_event(), 10) is None  # refused: closed unanswered
    for client in held:  # idle for 1.5 s: closed by the server
        assert await asyncio.wait_for(_until_closed(client), 10) is None
        await client.disconnect()
    async with server.client() as client:  # their places are free again
        await client.write_event(Event("describe"))
        assert (await asyncio.wait_for(client.read_event(), 10)).type == "info"


async def _until_closed(client: Any) -> None:
    while (event := await client.read_event()) is not None:
        assert event.type == "pong"


@pytest.mark.parametrize("voice", ["../../../../etc/passwd", "hf://kyutai/tts-voices/x.wav",
                                   "https://example.com/v.wav", "/tmp/voice.safetensors"])
async def test_voice_names_are_never_paths(server: ServerProcess, voice: str) -> None:
    async with server.client() as client:
        await client.write_event(Synthesize("hello", voice=SynthesizeVoice(voice)).event())
        error = await _read_until(client, {"error", "audio-start"}, 30)
    assert error.type == "error" and error.data["code"] == "unknown-voice"
    assert error.data["text"] == f"unknown voice {voice!r}"  # nothing about what exists on disk


async def test_user_ids_are_opaque_keys(start_server, ollama: OllamaDouble) -> None:
    server = start_server("--llm-url", ollama.url)
    async with server.client() as client:
        context = server.signed("hello", {"user_id": "../../etc"})
        await client.write_event(Transcript(text="hello", context=context).event())
        error = await _read_until(client, {"error", "handled"}, 10)
    assert error.type == "error" and error.data["code"] == "malformed-event"
    assert server.http_fetch("/api/memory/..%2F..%2Fetc")[0] in (400, 404)
    assert server.http_fetch("/api/memory/" + "x" * 200)[0] == 400


async def test_the_wyoming_port_carries_nothing_private_without_the_proof(
    start_server, ollama: OllamaDouble
) -> None:
    """A plain Wyoming client gets a memory-less answer; the Coda integration's signed request
    gets its user's memory (quoted as data in the prompt, never as instructions)."""
    ollama.script = [Reply(text="Hello.")] * 4
    server = start_server("--llm-url", ollama.url)
    await handle_turn(server, "My name is Mallory.", context={"user_id": "alice"}, signed=False)
    assert server.http_get("/api/memory/alice")[1]["facts"] == []
    await handle_turn(server, "My name is Alice.", context={"user_id": "alice"})
    assert [f["text"] for f in server.http_get("/api/memory/alice")[1]["facts"]] == ["The user's name is Alice."]
    await handle_turn(server, "what is my name", context={"user_id": "alice"}, signed=False)
    assert "Alice" not in ollama.requests[-1]["messages"][0]["content"]  # not recalled for a stranger
    await handle_turn(server, "what is my name", context={"user_id": "alice"})
    assert '- "The user\'s name is Alice."' in ollama.requests[-1]["messages"][0]["content"]
    stale = server.signed("what is my name", {"user_id": "alice"}) | {"proof_time": str(time.time() - 3600)}
    await handle_turn(server, "what is my name", context=stale, signed=False)  # an old proof: replayed
    assert "Alice" not in ollama.requests[-1]["messages"][0]["content"]


async def test_memory_is_private_and_its_log_expires(start_server, ollama: OllamaDouble, tmp_path: Path) -> None:
    ollama.script = [Reply(text="Noted.")] * 2
    server = start_server("--llm-url", ollama.url, "--config", config_file(tmp_path, memory={"keep_turns_days": 0}))
    await handle_turn(server, "Remember that the spare key is under the pot.", context={"user_id": "bob"})
    memory = server.http_get("/api/memory/bob")[1]
    assert memory["turns"] == 0 and memory["facts"]  # the fact asked for stays, the turn log does not
    assert stat.S_IMODE((server.data_dir / "memory.db").stat().st_mode) == 0o600


async def test_duplex_and_events_inputs_are_bounded(plain_server: ServerProcess) -> None:
    server = plain_server
    async with server.session() as http:
        async with http.ws_connect(f"http://127.0.0.1:{server.http_port}/api/duplex?format=pcm") as ws:
            await ws.receive_bytes(timeout=30)
            await ws.send_bytes(bytes([1]) + b"\0\0" * 24000 * 6)  # 6 s in one message
            while (message := await ws.receive_bytes(timeout=30))[0] != 5:
                pass
            assert json.loads(message[1:])["code"] == "bad-audio"
        url = f"http://127.0.0.1:{server.http_port}/api/events?metrics_interval=1e-9"
        async with http.ws_connect(url) as ws:  # clamped: snapshots do not spin
            count, deadline = 0, time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                    count += 1
                except TimeoutError:
                    break
            assert count <= 5
        for bad in ("nan", "-1", "inf", "x"):
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect(f"http://127.0.0.1:{server.http_port}/api/events?metrics_interval={bad}")


async def test_sentences_are_not_read_by_a_recogniser_that_keeps_no_audio(plain_server: ServerProcess) -> None:
    """Kyutai STT keeps no utterance audio: `POST /api/heard` says so (the integration's local
    step then leaves the turn to the LLM)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {plain_server.token}"}) as http, http.post(
            f"http://127.0.0.1:{plain_server.http_port}/api/heard",
            json={"heard": "turn on the kitchen lights", "sentences": ["Turn on the kitchen lights."]}) as response:
        assert (response.status, (await response.json())["code"]) == (501, "not_supported")
