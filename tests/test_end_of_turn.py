"""The server ends spoken commands itself (`stt.end_of_turn`): the final transcript comes while
the audio still streams, when the STT's end-of-turn head says the user is done (or, without the
head, after the VAD's silence), and at the no-speech and length bounds.

The tiny STT's head scores are noise, so these servers run with the end-of-turn head's TEST
DOUBLE (tests/headdouble): the test writes the score the head gives."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping

from tests.serverproc import ROOT, ServerProcess
from tests.speech import read_wav
from tests.test_handle import config_file

RATE = 16000
CHUNK = 320  # 20 ms, as a satellite sends it
PACE = 0.5  # the audio goes at twice real time


def pcm(path: Path) -> np.ndarray:
    audio, rate, _, _ = read_wav(path)
    assert rate == RATE
    return np.frombuffer(audio, dtype="<i2")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype="<i2")


@dataclass
class Streamed:
    events: list[Event] = field(default_factory=list)
    transcript_at: int | None = None  # chunks sent when the transcript arrived
    chunks: int = 0

    @property
    def text(self) -> str:
        return next(e.data["text"] for e in self.events if e.type == "transcript")


async def stream(server: ServerProcess, audio: np.ndarray, at_chunk: Callable[[int], None] | None = None) -> Streamed:
    """Send `audio` paced as a satellite would, without audio-stop until it is all sent (as Home
    Assistant does once the STT owns the end); note when the transcript arrived."""
    result = Streamed()
    async with server.client() as client:

        async def reader() -> None:
            while (event := await client.read_event()) is not None:
                result.events.append(event)
                if event.type == "transcript":
                    result.transcript_at = result.chunks
                if event.type in ("pong", "error"):
                    return

        task = asyncio.create_task(reader())
        await client.write_event(Transcribe().event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        for start in range(0, len(audio), CHUNK):
            if at_chunk is not None:
                at_chunk(result.chunks)
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1,
                                                audio=audio[start:start + CHUNK].tobytes()).event())
            result.chunks += 1
            await asyncio.sleep(CHUNK / RATE * PACE)
        await client.write_event(AudioStop().event())  # late: the server answered already
        await client.write_event(Ping().event())
        await asyncio.wait_for(task, 30)
    return result


def counter(server: ServerProcess, reason: str) -> float:
    _, body = server.http_fetch("/metrics")
    match = re.search(rf'^coda_end_of_turn_total{{reason="{reason}"}} (\S+)$', body.decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def head(tmp_path: Path) -> Path:
    """The score file of the head's test double."""
    path = tmp_path / "end-of-turn-score"
    path.write_text("0")
    return path


@pytest.fixture
def start_with_head(start_server, head: Path, tmp_path: Path) -> Callable[..., ServerProcess]:
    def start(**stt: object) -> ServerProcess:
        args = ["--config", config_file(tmp_path, voice_processing={"stt": stt})] if stt else []
        return start_server(*args, env={"PYTHONPATH": str(ROOT / "tests" / "headdouble"),
                                        "CODA_TEST_END_OF_TURN": str(head)})
    return start


async def test_the_server_ends_the_command_while_audio_streams(start_with_head, head: Path,
                                                               speech_dir: Path) -> None:
    server = start_with_head()
    words = pcm(speech_dir / "s0.wav")  # with 0.7 s of silence after
    spoken_chunks = (len(words) - int(0.7 * RATE)) // CHUNK

    def head_says(chunk: int) -> None:  # as a real head: done once the words are over
        head.write_text("1" if chunk >= spoken_chunks else "0")

    result = await stream(server, np.concatenate([words, silence(3.0)]), head_says)
    types = [e.type for e in result.events]
    assert types[-3:] == ["transcript", "transcript-stop", "pong"]  # the late audio-stop: no error
    assert result.text
    assert spoken_chunks < result.transcript_at < spoken_chunks + 0.7 * RATE / CHUNK  # before a 0.7 s timer
    assert counter(server, "end-of-turn") == 1


async def test_a_pause_the_head_calls_unfinished_does_not_end_the_command(start_with_head, head: Path,
                                                                          speech_dir: Path) -> None:
    server = start_with_head(end_of_turn_max_pause_ms=3000)  # a head trusted through long pauses
    first, second = pcm(speech_dir / "s1.wav"), pcm(speech_dir / "s2.wav")
    audio = np.concatenate([first, silence(1.5), second, silence(2.0)])  # a pause longer than the VAD's 0.7 s
    second_starts = (len(first) + int(1.5 * RATE)) // CHUNK
    second_ends = second_starts + len(second) // CHUNK

    def head_says(chunk: int) -> None:  # not done until the second part is over
        head.write_text("1" if chunk >= second_ends else "0")

    held = await stream(server, audio, head_says)
    assert second_ends < held.transcript_at < held.chunks
    assert counter(server, "end-of-turn") == 1

    head.write_text("absent")  # a checkpoint without the head: the VAD's silence ends it in the pause
    cut = await stream(server, audio)
    assert cut.transcript_at < second_starts
    assert counter(server, "silence") == 1

    head.write_text("0")  # by default an unsure head holds a pause at most 1 s: close to a 0.7 s timer
    bounded = start_with_head()
    unsure = await stream(bounded, audio, lambda _chunk: head.write_text("0"))
    assert unsure.transcript_at < second_starts
    assert counter(bounded, "pause") == 1


async def test_no_speech_and_length_bounds(start_with_head, head: Path, speech_dir: Path) -> None:
    server = start_with_head(no_speech_timeout=1.0, max_command_seconds=3.0)
    quiet = await stream(server, silence(3.0))
    assert quiet.text == "" and quiet.transcript_at < 2.0 * RATE / CHUNK  # about 1 s in
    assert counter(server, "no-speech") == 1

    talk = np.concatenate([pcm(speech_dir / f"s{i}.wav")[: int(1.2 * RATE)] for i in range(4)])  # 4.8 s, no gaps
    long = await stream(server, talk)  # the head never says done
    assert 3.0 * RATE / CHUNK <= long.transcript_at < 4.0 * RATE / CHUNK
    assert counter(server, "max-length") == 1


async def test_asr_says_who_ends_the_command(server: ServerProcess, start_server) -> None:
    async def asr_program(proc: ServerProcess) -> dict:
        async with proc.client() as client:
            await client.write_event(Describe().event())
            while (event := await client.read_event()) is not None and event.type != "info":
                pass
        assert event is not None
        return event.data["asr"][0]

    owned = await asr_program(server)
    assert owned["requires_external_vad"] is False
    assert owned["prefers_auto_gain_enabled"] is False and owned["prefers_noise_reduction_enabled"] is False
    external = await asr_program(start_server("--no-end-of-turn"))
    assert external["requires_external_vad"] is True
