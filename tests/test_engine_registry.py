"""The engine registry: a new kind of engine is one module plus one registration; the server
serves it over Wyoming with nothing else touched (the stand-in is tests/standin_engine.py)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from tests.serverproc import free_port
from tests.standin_engine import register
from wyoming_coda.audio import FRAME_SIZE
from wyoming_coda.config import ServerConfig, TTSConfig, VoiceConfig
from wyoming_coda.models.builtin import builtin_engines
from wyoming_coda.models.registry import EngineRegistry, UnknownEngineError
from wyoming_coda.models.store import ModelStore
from wyoming_coda.server import CodaServer


async def _read_until(client: AsyncTcpClient, last: str, timeout: float = 30.0) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await client.read_event()
            assert event is not None, "the server closed the connection"
            events.append(event)
            if event.type in (last, "error"):
                return events


async def test_a_new_engine_serves_wyoming_by_one_registration(tiny_hub: dict[str, Path], tmp_path: Path) -> None:
    engines = builtin_engines()
    register(engines, "kyutai")  # the stand-in serves TTS next to Kyutai STT
    port = free_port()
    config = VoiceConfig(device="cpu", tts=TTSConfig(model="tone", voice="tone-a"),
                         server=ServerConfig(uri=f"tcp://127.0.0.1:{port}", http_port=0, data_dir=str(tmp_path)))
    server = CodaServer(config, engines)
    stop = asyncio.Event()
    running = asyncio.create_task(server.run(stop))
    try:
        await asyncio.wait_for(server.manager.store.wait_all(), 60)
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            info = Info.from_event((await _read_until(client, "info"))[-1])
            (tts,) = info.tts
            assert tts.description == "Tone TTS streaming text-to-speech"
            assert [v.name for v in tts.voices] == ["tone-a", "tone-b"]
            assert {v.attribution.name for v in tts.voices} == {"Tone"}
            assert info.asr[0].description == "Kyutai STT speech-to-text"  # the built-in engines are unchanged

            await client.write_event(Synthesize("three little words", voice=SynthesizeVoice("tone-b")).event())
            events = await _read_until(client, "audio-stop")
            chunks = [e for e in events if e.type == "audio-chunk"]
            assert events[0].type == "audio-start" and len(chunks) == 3
            assert {len(c.payload or b"") for c in chunks} == {FRAME_SIZE * 2}

            await client.write_event(Synthesize("hello", voice=SynthesizeVoice("nobody")).event())
            (error,) = await _read_until(client, "audio-stop")
            assert error.type == "error" and error.data["code"] == "unknown-voice"
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)


def test_a_profile_without_an_engine_for_a_role_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownEngineError, match="no stt engine is registered for the kyutai profile"):
        ModelStore(VoiceConfig(device="cpu", server=ServerConfig(data_dir=str(tmp_path))), engines=EngineRegistry())
