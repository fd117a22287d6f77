"""Full-duplex Moshi sessions over the WebSocket (tiny Moshi checkpoint) and the events
WebSocket, against a real server process."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import numpy as np
import pytest
import soxr
import sphn

from tests.serverproc import ServerProcess
from tests.speech import read_wav

HANDSHAKE, AUDIO, TEXT, CONTROL, METADATA, ERROR, PING, USER_TEXT = range(8)
FRAME = 1920


def speech_24k(path: Path) -> np.ndarray:
    pcm, rate, _, _ = read_wav(path)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    return soxr.resample(samples, rate, 24000).astype(np.float32)


@pytest.fixture
def duplex_server(start_server, tmp_path: Path) -> ServerProcess:
    from tests.test_handle import config_file

    # a target no step can meet: every late step is flagged and counted
    return start_server("--duplex", "--config",
                        config_file(tmp_path, voice_processing={"moshi": {"target_latency_ms": 1}}))


async def session(server: ServerProcess, audio: np.ndarray, fmt: str = "pcm", pace: float = 0.0,
                  extra: list[bytes] | None = None, voice: str | None = None) -> dict[int, list]:
    """Send `audio` in 80 ms frames, then collect what comes back: messages by kind, and under
    -1 every (kind, payload) in arrival order."""
    received: dict[int, list] = {k: [] for k in range(-1, 8)}
    writer = sphn.OpusStreamWriter(24000) if fmt == "opus" else None
    encode = {"pcm": lambda f: (f * 32767).astype("<i2").tobytes(), "f32": lambda f: f.astype("<f4").tobytes()}
    async with server.session() as http, http.ws_connect(
            f"http://127.0.0.1:{server.http_port}/api/duplex?format={fmt}" + (f"&voice={voice}" if voice else "")) as ws:
        hello = await ws.receive_bytes(timeout=30)
        received[hello[0]].append(hello[1:])

        async def read() -> None:
            async for message in ws:
                received[message.data[0]].append(message.data[1:])
                received[-1].append((message.data[0], message.data[1:]))

        reader = asyncio.create_task(read())
        for message in extra or []:
            await ws.send_bytes(message)
        for start in range(0, len(audio) - FRAME + 1, FRAME):
            frame = audio[start:start + FRAME]
            payload = writer.append_pcm(frame) if writer else encode[fmt](frame)
            await ws.send_bytes(bytes([AUDIO]) + payload)
            await asyncio.sleep(pace)
        seen = -1
        for _ in range(60):  # until Moshi has answered every frame it got (no step for 0.5 s)
            await asyncio.sleep(0.5)
            if len(received[METADATA]) == seen:
                break
            seen = len(received[METADATA])
        await ws.send_bytes(bytes([CONTROL]) + json.dumps({"action": "close"}).encode())
        await asyncio.wait_for(reader, 10)
    return received


async def test_pcm_session_frames_both_ways(duplex_server: ServerProcess, speech_dir: Path) -> None:
    audio = speech_24k(speech_dir / "s0.wav")
    frames = len(audio) // FRAME
    got = await session(duplex_server, audio)
    hello = json.loads(got[HANDSHAKE][0])
    assert hello["sample_rate"] == 24000 and hello["frame_size"] == FRAME and hello["format"] == "pcm"
    assert len(got[METADATA]) == frames  # one step per user frame, none held back
    assert frames - 3 <= len(got[AUDIO]) <= frames  # Moshi's audio lags by its acoustic delay
    assert all(len(chunk) == FRAME * 2 for chunk in got[AUDIO])
    assert got[TEXT] and all(piece.decode() for piece in got[TEXT])  # the inner monologue
    assert got[USER_TEXT]  # the user's side, from Kyutai STT running alongside
    assert not got[ERROR]
    from tests.test_observability import samples

    metrics = samples(duplex_server)
    assert metrics[("coda_engine_step_seconds_count", (("engine", "moshi"),))] >= len(got[METADATA])
    late = [json.loads(step)["late"] for step in got[METADATA]]
    assert any(late) and metrics[("coda_duplex_late_steps_total", ())] >= sum(late)


async def test_opus_session(duplex_server: ServerProcess, speech_dir: Path) -> None:
    got = await session(duplex_server, speech_24k(speech_dir / "s1.wav"), fmt="opus")
    reader = sphn.OpusStreamReader(24000)
    decoded = np.concatenate([reader.append_bytes(page) for page in got[AUDIO]])
    assert json.loads(got[HANDSHAKE][0])["format"] == "opus"
    assert decoded.size >= FRAME * (len(got[AUDIO]) - 2) and np.isfinite(decoded).all()


async def test_user_talking_over_moshi_mutes_it_within_a_frame(duplex_server: ServerProcess,
                                                                speech_dir: Path) -> None:
    audio = np.concatenate([np.zeros(24000 * 3 // 2, np.float32), speech_24k(speech_dir / "pause.wav")])
    got = await session(duplex_server, audio, pace=0.04)  # twice real time, as a live client
    log = got[-1]
    controls = [(i, event) for i, (k, p) in enumerate(log) if k == CONTROL
                and (event := json.loads(p)["event"]) in ("interruption", "resume")]  # not the LLM's events
    assert [event for _, event in controls] == ["interruption", "resume"]
    (start, _), (end, _) = controls
    assert any(k == AUDIO for k, _ in log[:start])  # Moshi was talking (tiny Moshi is loud)
    held = log[start + 1:end]
    steps = [json.loads(p) for k, p in held if k == METADATA]
    assert steps and all(step["muted"] for step in steps)  # frames kept stepping ...
    assert not any(k == AUDIO for k, _ in held)  # ... but none of its audio went out
    assert any(k == AUDIO for k, _ in log[end:])


async def test_float32_session(duplex_server: ServerProcess, speech_dir: Path) -> None:
    got = await session(duplex_server, speech_24k(speech_dir / "s4.wav")[: FRAME * 8], fmt="f32")
    assert len(got[METADATA]) == 8 and got[AUDIO]
    assert all(len(chunk) == FRAME * 4 and np.isfinite(np.frombuffer(chunk, "<f4")).all() for chunk in got[AUDIO])


async def test_malformed_messages_get_errors(duplex_server: ServerProcess, speech_dir: Path) -> None:
    extra = [b"", bytes([9]) + b"what", bytes([CONTROL]) + b"not json", bytes([AUDIO]) + b"\x01",
             bytes([PING]) + b"marco"]
    got = await session(duplex_server, speech_24k(speech_dir / "s2.wav")[: FRAME * 5], extra=extra)
    codes = [json.loads(e)["code"] for e in got[ERROR]]
    assert codes == ["malformed-message"] * 3 + ["bad-audio"]
    assert got[PING] == [b"marco"]
    assert len(got[METADATA]) == 5  # the session went on


async def test_sessions_at_once_and_disconnects(duplex_server: ServerProcess, speech_dir: Path) -> None:
    for _ in range(6):  # more dropped sessions than rows: a leak would stall the next ones
        async with duplex_server.session() as http:
            ws = await http.ws_connect(f"http://127.0.0.1:{duplex_server.http_port}/api/duplex?format=pcm")
            await ws.receive_bytes(timeout=30)
            await ws.send_bytes(bytes([AUDIO]) + b"\0\0" * FRAME * 3)
            await ws.close()
    audio = speech_24k(speech_dir / "s3.wav")[: FRAME * 10]
    results = await asyncio.wait_for(asyncio.gather(*(session(duplex_server, audio) for _ in range(4))), 120)
    assert all(len(r[METADATA]) == 10 for r in results)


async def test_a_second_moshi_voice(start_server, speech_dir: Path) -> None:
    """`--moshi-voice` loads another Moshi; a session picks it with `?voice=`."""
    server = start_server("--duplex", "--moshi-voice", "kyutai/moshiko-pytorch-bf16")
    audio = speech_24k(speech_dir / "s1.wav")[: FRAME * 6]
    default, picked = await session(server, audio), await session(server, audio, voice="moshiko")
    hello = json.loads(default[HANDSHAKE][0])
    assert hello["voice"] == "moshika" and hello["voices"] == ["moshika", "moshiko"]
    assert json.loads(picked[HANDSHAKE][0])["voice"] == "moshiko"
    assert len(picked[METADATA]) == 6 and picked[AUDIO]
    async with server.session() as http, http.ws_connect(
            f"http://127.0.0.1:{server.http_port}/api/duplex?voice=nobody") as ws:
        message = await ws.receive_bytes(timeout=10)
    error = json.loads(message[1:])
    assert message[0] == ERROR and error["code"] == "bad-request" and "moshika, moshiko" in error["text"]
    _, health = server.http_get("/healthz")
    assert health["models"]["moshi/moshiko"]["state"] == "ready"


async def test_hybrid_server_without_duplex_says_so(start_server) -> None:
    server = start_server()
    async with server.session() as http, http.ws_connect(
            f"http://127.0.0.1:{server.http_port}/api/duplex") as ws:
        message = await ws.receive_bytes(timeout=10)
    assert message[0] == ERROR and "not used in hybrid mode" in json.loads(message[1:])["text"]


async def test_events_websocket(duplex_server: ServerProcess, speech_dir: Path) -> None:
    url = f"http://127.0.0.1:{duplex_server.http_port}/api/events"
    async with duplex_server.session() as http, http.ws_connect(url + "?metrics_interval=0.3") as plain, \
            http.ws_connect(url + "?audio=1&metrics_interval=0") as with_audio:
        await session(duplex_server, speech_24k(speech_dir / "s0.wav")[: FRAME * 12])
        events = []
        while not {"metrics", "audio_chunk"} <= {e["event_type"] for e in events}:
            events.append(json.loads((await plain.receive(timeout=5)).data))
        audio_events = []
        while len(audio_events) < 3:
            event = json.loads((await with_audio.receive(timeout=5)).data)
            if event["event_type"] == "audio_chunk":
                audio_events.append(event)
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "conversation_start" and "audio_chunk" in kinds and "metrics" in kinds
    for event in events:
        assert set(event) == {"event_type", "timestamp", "data"} and isinstance(event["timestamp"], float)
    chunk = next(e for e in events if e["event_type"] == "audio_chunk")["data"]
    assert {"conversation_id", "direction", "samples", "sample_rate", "level_dbfs"} <= set(chunk)
    assert "audio_b64" not in chunk and "_audio" not in chunk
    metrics = next(e for e in events if e["event_type"] == "metrics")["data"]
    assert "total_conversations" in metrics and "latency_ms" in metrics
    pcm = base64.b64decode(audio_events[0]["data"]["audio_b64"])
    assert len(pcm) == audio_events[0]["data"]["samples"] * 2
