"""Fuzzing the Wyoming side (hypothesis): malformed, truncated, oversized and wrongly typed
events — the framing alone, then every event type's data against a real server. The server
answers with an `error` event or closes the connection, never crashes, and keeps serving a
client that behaves."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping

from tests.serverproc import ServerProcess
from wyoming_coda.wyoming.protocol import MAX_DATA_BYTES, ProtocolError, read_event

EVENT_TYPES = ["transcribe", "audio-start", "audio-chunk", "audio-stop", "synthesize", "synthesize-start",
               "synthesize-chunk", "synthesize-stop", "transcript", "coda-tool-result", "describe", "ping",
               "info", "handled", "no-such-event"]
FIELDS = ["text", "language", "rate", "width", "channels", "timestamp", "voice", "context", "id", "result",
          "error", "name", "tools", "memory", "personality", "conversation_id"]

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELDS), children, max_size=4),
    max_leaves=8,
)
event_data = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)


def frame(header: dict[str, Any], data: bytes = b"", payload: bytes = b"") -> bytes:
    return json.dumps(header).encode() + b"\n" + data + payload


raw_headers = st.one_of(
    st.binary(max_size=60).map(lambda b: b + b"\n"),  # not JSON at all
    st.builds(lambda t, dl, pl: frame({"type": t, "data_length": dl, "payload_length": pl}),
              st.one_of(st.sampled_from(EVENT_TYPES), values),
              st.one_of(st.integers(-5, 2 * MAX_DATA_BYTES), values),
              st.one_of(st.integers(-5, 64), values)),
)


async def _read_all(stream: bytes) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(stream)
    reader.feed_eof()
    for _ in range(16):
        try:
            if await read_event(reader) is None:
                return
        except ProtocolError:
            continue


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(raw_headers, st.binary(max_size=40)), max_size=6))
def test_framing_never_raises_anything_but_protocol_errors(chunks: list[bytes]) -> None:
    asyncio.run(_read_all(b"".join(chunks)))


async def _send(server: ServerProcess, events: list[Event], tail: bytes) -> list[str]:
    """Send events (then raw bytes), read what comes back for a moment; the answers' types."""
    answers: list[str] = []
    async with AsyncTcpClient("127.0.0.1", server.port) as client:
        for event in events:
            await client.write_event(event)
        assert client._writer is not None
        client._writer.write(tail)
        await client._writer.drain()
        try:
            async with asyncio.timeout(0.3):
                while (event := await client.read_event()) is not None:
                    answers.append(event.type)
        except (TimeoutError, ConnectionError, ValueError, json.JSONDecodeError):
            pass
    return answers


@pytest.fixture(scope="module")
def fuzz_server(tiny_hub, tmp_path_factory) -> ServerProcess:
    server = ServerProcess(["--llm-url", "http://127.0.0.1:9"], data_dir=tmp_path_factory.mktemp("fuzz"))
    server.start()
    yield server
    server.kill()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.builds(lambda t, d, p: Event(type=t, data=d, payload=p),
                                 st.sampled_from(EVENT_TYPES), event_data, st.none() | st.binary(max_size=64)),
                       min_size=1, max_size=6),
       tail=st.one_of(st.just(b""), raw_headers, st.binary(max_size=30)))
def test_every_event_type_with_bad_data(fuzz_server: ServerProcess, events: list[Event], tail: bytes) -> None:
    async def one() -> None:
        await _send(fuzz_server, events, tail)
        async with AsyncTcpClient("127.0.0.1", fuzz_server.port) as client:  # and it still serves
            await client.write_event(Ping(text="still there").event())
            async with asyncio.timeout(10):
                while (event := await client.read_event()) is not None and event.type != "pong":
                    pass
            assert event is not None and event.data["text"] == "still there"

    asyncio.run(one())
    assert fuzz_server.proc is not None and fuzz_server.proc.poll() is None
    assert "never retrieved" not in fuzz_server.log()  # no task a bad event started died unseen


async def test_a_behaving_client_is_served_during_the_fuzz(fuzz_server: ServerProcess) -> None:
    """Garbage on several connections at once while a good client asks for `describe`."""
    garbage = [frame({"type": "audio-chunk", "data_length": 5}, b"{bad}"), b"\xff" * 50 + b"\n",
               frame({"type": "synthesize", "data": {"text": ["list"]}}), frame({"type": "transcript", "data": 3})]

    async def noisy(blob: bytes) -> None:
        await _send(fuzz_server, [], blob * 20)

    async def good() -> str:
        async with AsyncTcpClient("127.0.0.1", fuzz_server.port) as client:
            await client.write_event(Describe().event())
            while (event := await client.read_event()) is not None and event.type != "info":
                pass
            return event.type if event else "closed"

    results = await asyncio.gather(*(noisy(g) for g in garbage), good())
    assert results[-1] == "info"
