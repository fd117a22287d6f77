"""Writing text into Moshi's inner monologue (the engine on the tiny Moshi checkpoint): the
words come out of its monologue in order, flagged as written, change the audio it makes, and
stop when the user interrupts."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_duplex import speech_24k

FRAME = 1920


@pytest.fixture
async def engine(tiny_hub):
    from wyoming_coda.engines.lm import LMStack
    from wyoming_coda.engines.moshi import MoshiEngine
    from wyoming_coda.models.checkpoints import resolve_checkpoint

    stack = LMStack.load(resolve_checkpoint("kyutai/moshika-pytorch-bf16", "moshi"), "cpu", torch.float32)
    engine = MoshiEngine(stack, 2, ThreadPoolExecutor(1))
    yield engine
    await engine.close()


async def converse(engine, audio: np.ndarray, say: str | None = None, interrupt_at: int | None = None,
                   seed: int = 7) -> list:
    """Moshi's outputs for `audio`, fed frame by frame; `say` is written in before the first frame."""
    torch.manual_seed(seed)
    session = await engine.open()
    try:
        if say:
            session.say(say)
        outputs = []
        reader = session.outputs()
        for i in range(len(audio) // FRAME):
            if i == interrupt_at:
                session.stop_saying()
            session.feed(audio[i * FRAME:(i + 1) * FRAME])
            outputs.append(await anext(reader))
        return outputs
    finally:
        await session.close()


async def test_written_words_come_out_in_order_and_change_the_audio(engine, speech_dir: Path) -> None:
    audio = speech_24k(speech_dir / "s0.wav")
    codes: list[list[int]] = []  # Moshi's audio tokens, step by step (the tiny Mimi decodes them all alike)
    engine._lm_gen.on_audio_hook = lambda tokens: codes.append(tokens[0].tolist())

    async def run(say: str | None = None) -> tuple[list, list[list[int]]]:
        codes.clear()
        outputs = await converse(engine, audio, say=say)
        return outputs, list(codes)

    plain, plain_codes = await run()
    again, again_codes = await run()
    assert [o.text for o in plain] == [o.text for o in again] and plain_codes == again_codes  # deterministic
    answer = "the kitchen light is on"
    told, told_codes = await run(answer)
    written = "".join(o.text for o in told if o.written)
    assert written.split() == answer.split()  # every word, in order, in Moshi's own monologue
    assert not any(o.written for o in plain)
    assert told_codes != plain_codes  # Moshi's audio follows the written text


async def test_interruption_stops_the_written_answer(engine, speech_dir: Path) -> None:
    audio = speech_24k(speech_dir / "s0.wav")
    answer = " ".join(["word"] * 40)
    whole = await converse(engine, audio, say=answer)
    cut = await converse(engine, audio, say=answer, interrupt_at=3)
    assert sum(o.written for o in cut) < sum(o.written for o in whole)
    delay = engine._lm_gen.max_delay
    assert not any(o.written for o in cut[3 + delay + 1:])  # nothing written after the stop comes out


def spoken_form(session, text: str) -> list[str]:
    """The words of `text` as Moshi's tokenizer can write them (the tiny one lacks some characters)."""
    from wyoming_coda.engines.lm import NO_TEXT

    tokenizer = session.engine.stack.tokenizer
    pieces = [tokenizer.id_to_piece(t) for t in session.engine.text_tokens(text) if t not in NO_TEXT]
    return "".join(pieces).replace("▁", " ").split()


async def test_llm_answers_in_moshis_voice(tiny_hub, ollama, tmp_path: Path) -> None:
    """A duplex session: chit-chat stays with Moshi; a device command goes to the LLM (with its
    tool call), whose words Moshi then says; what Moshi said before is in the LLM's history."""
    from tests.ollama_double import Reply
    from wyoming_coda import ExternalLLMConfig, MoshiConfig, ServerConfig, VoiceConfig, VoiceManager
    from wyoming_coda.duplex.messages import ServerEvent
    from wyoming_coda.duplex.router import DuplexRouter

    manager = VoiceManager(VoiceConfig(
        device="cpu", moshi=MoshiConfig(duplex=True), external_llm=ExternalLLMConfig(url=ollama.url),
        server=ServerConfig(data_dir=str(tmp_path / "data"))))
    await manager.initialize()
    session = await manager.open_duplex()
    notes: list[dict] = []

    async def notify(event: ServerEvent) -> None:
        notes.append(event.fields())

    try:
        conversation_id = await manager.start_conversation(user_id="duplex")
        hybrid = DuplexRouter(manager.turns, manager.conversations, manager.homes, session, conversation_id, notify)
        reader = session.outputs()
        silence = np.zeros(FRAME, dtype=np.float32)

        async def step() -> object:
            session.feed(silence)
            output = await anext(reader)
            hybrid.moshi_words(output.text, output.written)
            return output

        hybrid.user_words(" hello there")
        assert (await hybrid.end_of_utterance()).name == "moshi"
        own = [await step() for _ in range(10)]
        assert not any(o.written for o in own) and not hybrid.answering

        answer = "Your tea timer is running."
        ollama.script = [Reply(tool_calls=[("start_timer", {"name": "tea", "seconds": 60})]), Reply(text=answer)]
        hybrid.user_words(" set a timer for the tea")
        assert (await hybrid.end_of_utterance()).name == "llm"
        outputs = []
        for _ in range(200):
            outputs.append(await step())
            if not hybrid.answering:
                break
        assert "".join(o.text for o in outputs if o.written).split() == spoken_form(session, answer)
        kinds = [n["event"] for n in notes]
        assert kinds == ["llm_turn", "tool_call", "tool_result", "llm_done"]
        assert notes[1]["name"] == "start_timer" and notes[2]["error"] is None
        messages = ollama.requests[0]["messages"]
        assert {"role": "user", "content": "hello there"} in [{k: m[k] for k in ("role", "content")}
                                                            for m in messages]
        assert messages[-1]["content"] == "set a timer for the tea"
    finally:
        await session.close()
        await manager.close()


async def test_moshirag_trigger_sends_the_question_to_the_llm(tiny_hub, ollama, tmp_path: Path) -> None:
    """A MoshiRAG checkpoint decides itself when knowledge is needed: the transcript router
    leaves the utterance to Moshi, and Moshi's retrieval trigger token (forced here, the tiny
    model being random) sends what the user said to the LLM, whose answer Moshi then says."""
    from tests.ollama_double import Reply
    from wyoming_coda import ExternalLLMConfig, MoshiConfig, ServerConfig, VoiceConfig, VoiceManager
    from wyoming_coda.duplex.router import DuplexRouter

    manager = VoiceManager(VoiceConfig(
        device="cpu", moshi=MoshiConfig(duplex=True, model_path="kyutai/moshika-rag-pytorch-bf16"),
        external_llm=ExternalLLMConfig(url=ollama.url), server=ServerConfig(data_dir=str(tmp_path / "data"))))
    await manager.initialize()
    session = await manager.open_duplex()
    engine = session.engine
    assert engine.retrieval_token == 5  # from the checkpoint's config.json (rag_token_id)
    fire = [False]

    def trigger_now(logits: torch.Tensor) -> None:
        if fire[0]:
            logits[..., engine.retrieval_token] += 1e4
            fire[0] = False

    engine._lm_gen.on_text_logits_hook = trigger_now
    try:
        conversation_id = await manager.start_conversation(user_id="duplex")
        hybrid = DuplexRouter(manager.turns, manager.conversations, manager.homes, session, conversation_id,
                              notify=lambda _e: asyncio.sleep(0))
        reader = session.outputs()
        silence = np.zeros(FRAME, dtype=np.float32)
        hybrid.user_words(" what is the capital of france")
        assert (await hybrid.end_of_utterance()).name == "moshi" and not ollama.requests

        answer = "Paris is the capital of France."
        ollama.script = [Reply(text=answer)]
        outputs = []
        for step in range(200):
            fire[0] = step == 2
            session.feed(silence)
            output = await anext(reader)
            if output.retrieval:
                hybrid.retrieval_triggered()
            hybrid.moshi_words(output.text, output.written)
            outputs.append(output)
            if step > 5 and ollama.requests and not hybrid.answering:
                break
        assert any(o.retrieval for o in outputs[2:5])  # the forced trigger (the tiny model may sample it too)
        assert ollama.requests[0]["messages"][-1]["content"] == "what is the capital of france"
        assert "".join(o.text for o in outputs if o.written).split() == spoken_form(session, answer)
    finally:
        await hybrid.close()
        await session.close()
        await manager.close()


def test_a_moshirag_reference_stream_needs_the_moshi_rag_build(tiny_hub) -> None:
    import dataclasses

    from wyoming_coda.engines.moshi_compat import UnsupportedCheckpointError, retrieval_trigger
    from wyoming_coda.models.checkpoints import resolve_checkpoint

    info = resolve_checkpoint("kyutai/moshika-rag-pytorch-bf16", "moshi")
    real = dataclasses.replace(info, lm_config={**info.lm_config, "conditioners": {
        "reference_with_time": {"type": "multi_arc_encoder", "hf_repo": "kyutai/ARC4_Encoder_Llama"}}})
    with pytest.raises(UnsupportedCheckpointError, match="moshi-rag build"):
        retrieval_trigger(real)
    _, token = retrieval_trigger(resolve_checkpoint("kyutai/moshika-pytorch-bf16", "moshi"))
    assert token is None


async def test_a_silent_moshi_still_answers(tiny_hub, tmp_path: Path) -> None:
    """A pipeline turn in which Moshi finds nothing to say (its text forced to padding here) ends
    with a short spoken answer, not an error that Home Assistant would read as an outage."""
    from wyoming_coda import MoshiConfig, ServerConfig, VoiceConfig, VoiceManager
    from wyoming_coda.engines.lm import NO_TEXT
    from wyoming_coda.turn.events import AudioOut, TurnDone
    from wyoming_coda.turn.runner import MOSHI_SILENT

    manager = VoiceManager(VoiceConfig(
        device="cpu", mode="moshi_only", moshi=MoshiConfig(reply_max_seconds=2.0, external_llm_enabled=False),
        server=ServerConfig(data_dir=str(tmp_path / "data"))))
    await manager.initialize()
    engine = await manager.store.moshi()

    def padding_only(logits: torch.Tensor) -> None:
        logits[..., :] = -1e4
        logits[..., NO_TEXT[1]] = 1e4

    engine._lm_gen.on_text_logits_hook = padding_only
    try:
        conversation_id = await manager.start_conversation()
        events = [e async for e in manager.process_text(conversation_id, "hello there", speak=True)]
    finally:
        await manager.close()
    done = events[-1]
    assert isinstance(done, TurnDone) and (done.text, done.error) == (MOSHI_SILENT, None)
    assert any(isinstance(e, AudioOut) for e in events)  # said by Kyutai TTS
