"""Wyoming asr against the real server: streaming events, resampling, VAD, bad input,
concurrency and batch isolation (tiny STT checkpoint: the text is random but deterministic)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.ping import Ping

from tests.serverproc import ServerProcess, exchange
from tests.wyoming_io import transcribe

STT_ROWS = 8  # the server's default stt.batch_size


async def test_streaming_event_sequence(server: ServerProcess, speech_dir: Path) -> None:
    async with server.client() as client:
        result = await transcribe(client, speech_dir / "pause.wav", wait_chunk_before_stop=True)
    types = result.types
    assert types[0] == "transcript-start"
    assert types[-2:] == ["transcript", "transcript-stop"]
    # text streamed while audio was still coming in, then the final transcript after audio-stop
    assert "transcript-chunk" in types[: result.sent_stop_at]
    chunks = "".join(e.data["text"] for e in result.of("transcript-chunk"))
    assert result.text == chunks.strip() and result.text
    assert result.of("transcript")[0].data["language"] == "en"
    # Silero VAD on real speech: started, then stopped within the trailing silence
    (started,) = result.of("voice-started")
    stopped = result.of("voice-stopped")
    assert len(stopped) == 1 and types.index("voice-started") < types.index("voice-stopped")
    assert 0 <= started.data["timestamp"] < stopped[0].data["timestamp"]


async def test_language_reported_as_requested(server: ServerProcess, speech_dir: Path) -> None:
    async with server.client() as client:
        result = await transcribe(client, speech_dir / "s1.wav", language="fr")
    assert result.of("transcript")[0].data["language"] == "fr"
    assert result.of("transcript-start")[0].data["language"] == "fr"


async def test_44k_stereo_is_resampled(server: ServerProcess, speech_dir: Path) -> None:
    async with server.client() as client:
        stereo = await transcribe(client, speech_dir / "stereo44k.wav")
    assert stereo.types[-2:] == ["transcript", "transcript-stop"]
    assert stereo.of("voice-started"), "speech was not heard after conversion"


async def test_silence_has_no_voice_events(server: ServerProcess, speech_dir: Path) -> None:
    async with server.client() as client:
        result = await transcribe(client, speech_dir / "silence.wav")
    assert not result.of("voice-started") and not result.of("voice-stopped")
    assert result.types[-2:] == ["transcript", "transcript-stop"]


async def test_concurrent_streams_match_solo_results(server: ServerProcess, speech_dir: Path) -> None:
    """8 clients at once are stepped in one batch; each gets exactly its solo transcript."""
    solo = {}
    for i in range(8):
        async with server.client() as client:
            solo[i] = (await transcribe(client, speech_dir / f"s{i}.wav")).text

    async def one(i: int) -> str:
        async with server.client() as client:
            return (await transcribe(client, speech_dir / f"s{i}.wav")).text

    together = await asyncio.gather(*(one(i) for i in range(8)))
    assert together == [solo[i] for i in range(8)]
    assert len(set(together)) > 1  # different audio, different text


async def test_empty_audio_is_a_clean_stop(server: ServerProcess) -> None:
    events = await exchange(
        server, [AudioStart(rate=16000, width=2, channels=1).event(), AudioStop().event()],
        until="transcript-stop",
    )
    assert [e.type for e in events] == ["transcript-start", "transcript", "transcript-stop"]
    assert events[1].data["text"] == ""


async def test_bad_audio_gets_errors_and_connection_lives(server: ServerProcess) -> None:
    chunk = AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0" * 160)
    cases = [
        ([chunk.event()], "no-audio-start"),
        ([AudioStop().event()], "no-audio-start"),
        ([AudioStart(rate=1, width=2, channels=1).event()], "unsupported-audio"),
        ([AudioStart(rate=16000, width=7, channels=1).event()], "unsupported-audio"),
        ([AudioStart(rate=16000, width=2, channels=99).event()], "unsupported-audio"),
        ([AudioStart(rate=16000, width=2, channels=1).event(),
          AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0\0").event()], "unsupported-audio"),
    ]
    for events, code in cases:
        answers = await exchange(server, [*events, Ping(text="after").event()], until="pong")
        errors = [e for e in answers if e.type == "error"]
        assert [e.data["code"] for e in errors] == [code], answers
        assert answers[-1].data["text"] == "after"


async def stt_rows_in_use(server: ServerProcess, rows: int, timeout: float = 30.0) -> None:
    """Wait until the STT engine has exactly `rows` rows taken (the server's /metrics)."""
    deadline = asyncio.get_running_loop().time() + timeout
    pattern = re.compile(r'^coda_batch_occupancy\{engine="stt"\} (\S+)$', re.MULTILINE)
    while True:
        _, body = await asyncio.to_thread(server.http_fetch, "/metrics")
        match = pattern.search(body.decode())
        taken = round(float(match.group(1)) * STT_ROWS) if match else 0
        if taken == rows:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{taken} STT rows in use, expected {rows}"
        await asyncio.sleep(0.05)


async def test_client_gone_mid_stream_frees_its_row(server: ServerProcess, speech_dir: Path) -> None:
    for _ in range(3):  # more dropped streams than a leak-free batch of 8 could absorb... x3
        clients = []
        for _ in range(4):
            client = server.client()
            await client.connect()
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=b"\1\0" * 8000).event())
            clients.append(client)
        await stt_rows_in_use(server, 4)  # every stream holds its row ...
        for client in clients:
            await client.disconnect()
        await stt_rows_in_use(server, 0)  # ... and gives it back when its client leaves

    async def one(i: int) -> str:
        async with server.client() as client:
            return (await transcribe(client, speech_dir / f"s{i}.wav")).types[-1]

    assert await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(8))), 60) == ["transcript-stop"] * 8
