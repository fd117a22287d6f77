"""`script/bench assist`: one Assist turn as a user feels it, through a real Home Assistant (the
current release) — a satellite streams speech in real time, then silence, until the pipeline
stops listening; from the end of the words: the final transcript, the first answer text, the
first answer audio. The agent is the Coda agent with an instantly answering LLM (the Ollama API
test double) in every row; the rows differ in speech-to-text, text-to-speech and who ends the
command:

- Coda, the server ends the command (its end-of-turn head);
- Coda, the server ends the command with a head that stays unsure (the pause bound ends it);
- Coda, the server ends the command without the head (Silero VAD's silence);
- Coda, Home Assistant's timer ends it (`--no-end-of-turn`, today's behaviour);
- wyoming-faster-whisper (Whisper tiny.en) + wyoming-piper, Home Assistant's timer (the setup
  most Home Assistant users have).

Tiny random checkpoints: their end-of-turn head gives noise, so the first row runs with the
head's test double (tests/headdouble) saying "done" from the end of the words on — what a real
head is trained to say; what a real head adds on a GPU is not measured here. Not collected by
the test suite; run with `script/bench assist [--rounds N]`."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from homeassistant.components import assist_pipeline, tts
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.core import Context, HomeAssistant

from tests.peers import start_whisper_and_piper
from tests.serverproc import free_port
from tests.speech import SENTENCES, make_speech

from .common import satellite_audio, setup_coda, wyoming_engines
from .conftest import ROOT

RATE, CHUNK = 16000, 320  # 20 ms of 16 kHz audio per chunk, sent in real time
TRAILING_SILENCE = 3.0  # seconds the satellite keeps streaming after the words
ROUNDS = int(os.environ.get("CODA_BENCH_ROUNDS", "5"))
ANSWER = "The kitchen light is on."


class Satellite:
    """Streams one utterance in real time; notes when the words ended."""

    def __init__(self, words: np.ndarray, head: Path | None) -> None:
        self.words = words
        self.head = head  # the head double's score file: "done" from the end of the words
        self.words_end: float | None = None

    async def stream(self) -> AsyncIterator[bytes]:
        audio = np.concatenate([self.words, np.zeros(int(TRAILING_SILENCE * RATE), dtype="<i2")])
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(audio), CHUNK)):
            if offset >= len(self.words) and self.words_end is None:
                self.words_end = time.monotonic()
                if self.head is not None:
                    self.head.write_text("1")
            await asyncio.sleep(max(0.0, start + index * CHUNK / RATE - time.monotonic()))
            yield audio[offset:offset + CHUNK].tobytes()


async def _pipeline(hass: HomeAssistant, name: str, stt_port: int, tts_port: int, voice: str | None = None) -> str:
    stt_id, tts_id = await wyoming_engines(hass, stt_port)
    if tts_port != stt_port:
        _, tts_id = await wyoming_engines(hass, tts_port)
    pipeline = await assist_pipeline.async_create_default_pipeline(
        hass, stt_engine_id=stt_id, tts_engine_id=tts_id, pipeline_name=name)
    assert pipeline is not None
    await assist_pipeline.async_update_pipeline(hass, pipeline, conversation_engine="conversation.coda_voice",
                                                tts_voice=voice)
    return pipeline.id


async def _turn(hass: HomeAssistant, pipeline_id: str, satellite: Satellite) -> dict[str, float]:
    """One turn: seconds from the end of the words to the transcript, the first answer text
    and the first answer audio."""
    marks: dict[str, float] = {}
    audio_task: list[asyncio.Task[None]] = []

    async def first_audio(token: str) -> None:
        stream = tts.async_get_stream(hass, token)
        assert stream is not None
        received = 0
        async for chunk in stream.async_stream_result():
            received += len(chunk)
            if received > 44:  # past the WAV header
                marks.setdefault("first_audio", time.monotonic())

    def seen(event: PipelineEvent) -> None:
        now = time.monotonic()
        if event.type is PipelineEventType.ERROR:
            raise AssertionError(event.data)
        if event.type is PipelineEventType.STT_END:
            marks["transcript"] = now
        elif event.type is PipelineEventType.INTENT_END or (
                event.type is PipelineEventType.INTENT_PROGRESS
                and (event.data or {}).get("chat_log_delta", {}).get("content")):
            marks.setdefault("first_text", now)
        elif event.type is PipelineEventType.TTS_END and not audio_task:
            audio_task.append(hass.async_create_task(first_audio(event.data["tts_output"]["token"])))
        elif event.type is PipelineEventType.RUN_START and (output := (event.data or {}).get("tts_output")):
            audio_task.append(hass.async_create_task(first_audio(output["token"])))

    await assist_pipeline.async_pipeline_from_audio_stream(
        hass, context=Context(), event_callback=seen, pipeline_id=pipeline_id,
        stt_metadata=satellite_audio(),
        stt_stream=satellite.stream(), tts_audio_output={tts.ATTR_PREFERRED_FORMAT: "wav"},
    )
    await asyncio.wait_for(audio_task[0], 30)
    assert satellite.words_end is not None
    return {stage: marks[stage] - satellite.words_end for stage in ("transcript", "first_text", "first_audio")}


def _words(path: Path) -> np.ndarray:
    """The spoken words of a WAV file, cut 20 ms after the last sample above -30 dBFS (espeak-ng
    ends its files with silence of its own, which would count as time after the words)."""
    with wave.open(str(path)) as wav:
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 1036)
    return audio[: loud[-1] + RATE // 50]


async def test_assist_turn(hass: HomeAssistant, coda_server_factory: Any, ollama: Any, tmp_path: Path) -> None:
    from tests.ollama_double import Reply

    hass.config.config_dir = str(tmp_path)
    double = {"PYTHONPATH": str(ROOT / "tests" / "headdouble")}
    head, no_head, unsure_head = tmp_path / "head", tmp_path / "no-head", tmp_path / "unsure-head"
    head.write_text("0")
    no_head.write_text("absent")
    unsure_head.write_text("0")  # never "done": the pause bound (end_of_turn_max_pause_ms) decides
    own = coda_server_factory(extra_env={**double, "CODA_TEST_END_OF_TURN": str(head)})
    unsure = coda_server_factory(extra_env={**double, "CODA_TEST_END_OF_TURN": str(unsure_head)})
    vad_only = coda_server_factory(extra_env={**double, "CODA_TEST_END_OF_TURN": str(no_head)})
    timer = coda_server_factory("--no-end-of-turn")
    whisper_port, piper_port = free_port(), free_port()
    peers = start_whisper_and_piper(Path(os.environ["CODA_PEERS_VENV"]), whisper_port, piper_port, tmp_path)
    try:
        await setup_coda(hass, own)  # the agent of every row
        rows = {
            "Coda, server end of turn (head)": (await _pipeline(hass, "own", own.port, own.port), head),
            "Coda, server end of turn (unsure head)": (await _pipeline(hass, "unsure", unsure.port, unsure.port),
                                                       None),
            "Coda, server end of turn (VAD only)": (await _pipeline(hass, "vad", vad_only.port, vad_only.port), None),
            "Coda, Home Assistant's timer": (await _pipeline(hass, "timer", timer.port, timer.port), None),
            "faster-whisper + piper, HA's timer": (await _pipeline(hass, "peers", whisper_port, piper_port,
                                                                           "en_US-joe-medium"), None),
        }
        utterances = [_words(make_speech(tmp_path / f"u{i}.wav", text)) for i, text in enumerate(SENTENCES[:4])]
        ollama.default = Reply(text=ANSWER, delay=0)
        results: dict[str, list[dict[str, float]]] = {label: [] for label in rows}
        for pipeline_id, score in rows.values():  # one warm-up turn each
            if score is not None:
                score.write_text("0")
            await _turn(hass, pipeline_id, Satellite(utterances[0], score))
        for round_ in range(ROUNDS):
            for label, (pipeline_id, score) in rows.items():
                if score is not None:
                    score.write_text("0")
                results[label].append(await _turn(hass, pipeline_id, Satellite(utterances[round_ % 4], score)))
    finally:
        for peer in peers:
            peer.kill()
    _report(results)


def _report(results: dict[str, list[dict[str, float]]]) -> None:
    medians = {label: {stage: statistics.median(r[stage] for r in turns) * 1000 for stage in turns[0]}
               for label, turns in results.items()}
    coda = medians["Coda, server end of turn (head)"]["first_audio"]
    timer = medians["Coda, Home Assistant's timer"]["first_audio"]
    print(f"\n\nAssist turn through Home Assistant, from the end of the words ({ROUNDS} turns per row, median ms)")
    print(f"  {'':<38} {'transcript':>10} {'answer text':>12} {'first audio':>12} {'/ Coda':>7}")
    for label, stages in medians.items():
        print(f"  {label:<38} {stages['transcript']:10.0f} {stages['first_text']:12.0f} "
              f"{stages['first_audio']:12.0f} {stages['first_audio'] / coda:7.2f}")
    share = coda - medians["Coda, server end of turn (head)"]["transcript"]
    unsure = medians["Coda, server end of turn (unsure head)"]["first_audio"]
    vad = medians["Coda, server end of turn (VAD only)"]["first_audio"]
    print(f"\n  server end of turn / Home Assistant's timer (first audio)   {coda / timer:5.2f}   (goal <= 0.40)")
    print(f"  unsure head / VAD only (first audio)                        {unsure / vad:5.2f}   (goal <= 1.50)")
    print(f"  transcript -> first audio, Coda with its own end of turn    {share:5.0f} ms")
    print("  tiny random checkpoints; the head row's head is a stand-in that says 'done' at the end of the words")
