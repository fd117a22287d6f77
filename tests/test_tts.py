"""Wyoming tts against the real server: whole-text and streaming synthesis, voices, barge-in,
bad input and concurrency (tiny TTS checkpoint: random but well-formed audio)."""

from __future__ import annotations

import asyncio
import time

from wyoming.event import Event
from wyoming.ping import Ping
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from tests.serverproc import ServerProcess, exchange
from wyoming_coda.speak.pipeline import split_sentences

FRAME_BYTES = 1920 * 2  # 80 ms of 24 kHz s16le mono


def audio_blocks(events: list[Event]) -> list[list[Event]]:
    """The audio-start … audio-stop groups, in order."""
    blocks: list[list[Event]] = []
    for event in events:
        if event.type == "audio-start":
            blocks.append([event])
        elif event.type in ("audio-chunk", "audio-stop"):
            blocks[-1].append(event)
    return blocks


async def test_synthesize_whole_text(server: ServerProcess) -> None:
    events = await exchange(server, [Synthesize(text="Turn on the kitchen light please.").event()], until="audio-stop")
    (block,) = audio_blocks(events)
    start, *chunks, stop = block
    assert (start.data["rate"], start.data["width"], start.data["channels"]) == (24000, 2, 1)
    assert chunks and all(len(c.payload) == FRAME_BYTES for c in chunks)
    assert [c.data["timestamp"] for c in chunks] == [80 * i for i in range(len(chunks))]
    assert stop.type == "audio-stop"


async def test_first_audio_before_the_sentence_is_done(server: ServerProcess) -> None:
    async with server.client() as client:
        await client.write_event(Synthesize(text="one two three four five six seven eight nine ten.").event())
        t0 = time.monotonic()
        first = None
        while (event := await client.read_event()).type != "audio-stop":
            if event.type == "audio-chunk" and first is None:
                first = time.monotonic() - t0
        total = time.monotonic() - t0
    assert first is not None and first < total / 3


async def test_streaming_synthesis_word_by_word(server: ServerProcess) -> None:
    async with server.client() as client:
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text="Hello there my").event())
        # spoken from the first words on: audio comes before any sentence has ended
        events = [await asyncio.wait_for(client.read_event(), 10)]
        assert events[0].type == "audio-start"
        events.append(await asyncio.wait_for(client.read_event(), 10))
        assert events[-1].type == "audio-chunk"
        await client.write_event(SynthesizeChunk(text=" friend. How are you today? Fine").event())
        await client.write_event(Synthesize(text="Hello there my friend. How are you today? Fine").event())
        await client.write_event(SynthesizeStop().event())
        while events[-1].type != "synthesize-stopped":
            events.append(await asyncio.wait_for(client.read_event(), 10))
    blocks = audio_blocks(events)
    assert len(blocks) == 1 and blocks[0][-1].type == "audio-stop"  # one row, one block, prosody runs on
    assert len(blocks[0]) > 10


async def test_voice_selection(server: ServerProcess) -> None:
    events = await exchange(
        server, [Synthesize(text="Hello.", voice=SynthesizeVoice(name="vctk/p225_023.wav")).event()],
        until="audio-stop",
    )
    assert len(audio_blocks(events)[0]) > 2
    events = await exchange(
        server, [Synthesize(text="Hello.", voice=SynthesizeVoice(name="no/such-voice")).event()], until="error"
    )
    assert events[-1].data["code"] == "unknown-voice" and "no/such-voice" in events[-1].data["text"]


async def test_barge_in_cancels_the_running_synthesis(server: ServerProcess) -> None:
    long_text = "one two three four five six seven eight nine ten eleven twelve. " * 3
    solo = await exchange(server, [Synthesize(text=long_text).event()], until="audio-stop")
    solo_chunks = len(audio_blocks(solo)[0]) - 2
    async with server.client() as client:
        await client.write_event(Synthesize(text=long_text).event())
        events = []
        while len([e for e in events if e.type == "audio-chunk"]) < 3:
            events.append(await asyncio.wait_for(client.read_event(), 10))
        await client.write_event(Synthesize(text="Stop.").event())
        stops = 0
        while stops < 2:
            events.append(await asyncio.wait_for(client.read_event(), 10))
            stops += events[-1].type == "audio-stop"
    first, second = audio_blocks(events)
    assert first[-1].type == "audio-stop" and len(first) - 2 < solo_chunks
    assert second[0].type == "audio-start" and second[-1].type == "audio-stop"


async def test_oversized_text_and_stray_events(server: ServerProcess) -> None:
    answers = await exchange(
        server,
        [Synthesize(text="a" * 100_000).event(), SynthesizeChunk(text="hi").event(),
         SynthesizeStop().event(), Ping(text="still").event()],
        until="pong",
    )
    assert [e.data["code"] for e in answers if e.type == "error"] == [
        "text-too-long", "no-synthesize-start", "no-synthesize-start"]
    assert answers[-1].data["text"] == "still"


async def test_empty_text_is_a_clean_stop(server: ServerProcess) -> None:
    events = await exchange(server, [Synthesize(text="   ").event()], until="audio-stop")
    assert [e.type for e in events] == ["audio-start", "audio-stop"]


async def test_eight_concurrent_clients(server: ServerProcess) -> None:
    async def one(i: int) -> int:
        events = await exchange(server, [Synthesize(text=f"Request number {i}, the lights are on.").event()],
                                until="audio-stop", timeout=60)
        return len(audio_blocks(events)[0]) - 2

    counts = await asyncio.gather(*(one(i) for i in range(8)))
    assert all(count > 0 for count in counts)


async def test_client_gone_mid_synthesis(server: ServerProcess) -> None:
    for _ in range(10):  # more than the 8 rows: a leaked row would stall the next request
        client = server.client()
        await client.connect()
        await client.write_event(Synthesize(text="one two three four five six seven eight.").event())
        while (await client.read_event()).type != "audio-chunk":
            pass
        await client.disconnect()
    events = await exchange(server, [Synthesize(text="Still here.").event()], until="audio-stop", timeout=30)
    assert len(audio_blocks(events)[0]) > 2


def test_split_sentences() -> None:
    assert split_sentences("Hi there. How are") == (["Hi there."], "How are")
    assert split_sentences('He said "yes." Then left!\nOK') == (['He said "yes."', "Then left!"], "OK")
    assert split_sentences("3.5 degrees") == ([], "3.5 degrees")


async def test_a_stream_waiting_for_text_does_not_speak(tiny_hub) -> None:
    """Rows without words stay silent even while other rows step (the LLM is still thinking)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from wyoming_coda.engines.moshi_compat import load_tts_model
    from wyoming_coda.engines.tts import TextToSpeech
    from wyoming_coda.models.checkpoints import resolve_checkpoint

    model = load_tts_model(resolve_checkpoint("kyutai/tts-1.6b-en_fr", "tts"), "cpu", torch.float32, "kyutai/tts-voices")
    engine = TextToSpeech(model, 2, ThreadPoolExecutor(1))
    voice = "expresso/ex03-ex01_happy_001_channel1_334s.wav"
    waiting, talking = await engine.open(voice), await engine.open(voice)
    talking.add_text("one two three four five.")
    talking.end_text()
    frames = [f async for f in talking.audio()]
    assert frames and waiting.steps == 0 and waiting.frames_out == 0
    waiting.add_text("Now me.")
    waiting.end_text()
    assert [f async for f in waiting.audio()]
    for stream in (waiting, talking):
        await stream.close()
    await engine.close()


async def test_no_depformer_runs_before_any_audio_is_due(tiny_hub) -> None:
    """The first `delay_steps` of a stream produce no audio: as in moshi's own TTS, those steps
    skip the depformer (every codebook of every step) and give it silence instead. The audio is
    the same (greedy decoding, so that both runs draw the same tokens)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch

    from wyoming_coda.engines.moshi_compat import load_tts_model
    from wyoming_coda.engines.tts import TextToSpeech
    from wyoming_coda.models.checkpoints import resolve_checkpoint

    model = load_tts_model(resolve_checkpoint("kyutai/tts-1.6b-en_fr", "tts"), "cpu", torch.float32, "kyutai/tts-voices")
    model.temp = 0.0
    depformer_runs = 0

    def counted(*_: object) -> None:
        nonlocal depformer_runs
        depformer_runs += 1

    model.lm.depformer.register_forward_hook(counted)

    async def speak(skip: bool) -> tuple[np.ndarray, int, int, int]:
        nonlocal depformer_runs
        depformer_runs = 0
        engine = TextToSpeech(model, 2, ThreadPoolExecutor(1), skip_idle_depformer=skip)
        stream = await engine.open("vctk/p225_023.wav")
        stream.add_text("Turn on the kitchen lights.")
        stream.end_text()
        audio = np.concatenate([frame async for frame in stream.audio()])
        steps = stream.steps
        await stream.close()
        await engine.close()
        for module in (model.lm, model.mimi):
            module._stop_streaming()
        return audio, steps, engine.depformer_skips, depformer_runs

    plain, plain_steps, none_skipped, plain_runs = await speak(skip=False)
    audio, steps, skipped, runs = await speak(skip=True)
    assert none_skipped == 0 and skipped == model.delay_steps and steps == plain_steps
    assert plain_runs - runs == skipped * model.lm.dep_q  # one depformer run per codebook and step
    np.testing.assert_array_equal(audio, plain)
