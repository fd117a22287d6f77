"""The server owns the end of a spoken command (current release: Home Assistant skips its own
voice-activity timer when the STT says `requires_external_vad: false`): the transcript arrives
while the satellite's audio still streams; a pause the end-of-turn head calls unfinished does
not end the command; the no-speech and length bounds end it. The oldest release runs its own
timer, as before.

The tiny STT's end-of-turn head gives noise, so the server runs with the head's TEST DOUBLE
(tests/headdouble): the test writes the score the head gives."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from homeassistant.components import assist_pipeline
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.core import Context, HomeAssistant
from wyoming.info import AsrProgram

from .common import satellite_audio
from .conftest import ROOT
from .test_pipeline import _coda_pipeline

RATE, CHUNK = 16000, 320  # 20 ms chunks of 16 kHz audio, as a satellite sends them
SERVER_OWNS_THE_END = "requires_external_vad" in AsrProgram.__dataclass_fields__  # Home Assistant 2026.5+
VAD_EVENTS = {PipelineEventType.STT_VAD_START, PipelineEventType.STT_VAD_END}


def _pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype="<i2")


class Satellite:
    """Streams audio in paced 20 ms chunks (twice real time) and counts what the pipeline took."""

    def __init__(self, audio: np.ndarray, at_chunk: Callable[[int], None] | None = None) -> None:
        self.audio = audio
        self.at_chunk = at_chunk
        self.sent = 0
        self.total = -(-len(audio) // CHUNK)

    async def stream(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.audio), CHUNK):
            if self.at_chunk is not None:
                self.at_chunk(self.sent)
            self.sent += 1
            yield self.audio[start:start + CHUNK].tobytes()
            await asyncio.sleep(0.01)


async def _listen(hass: HomeAssistant, pipeline_id: str, satellite: Satellite) -> tuple[dict[Any, Any], int]:
    """Run the pipeline's STT stage on the satellite's audio: events by type, and how many chunks
    the satellite had sent when the transcript (or the STT's error) came."""
    events: dict[Any, Any] = {}
    at_end: list[int] = []

    def seen(event: PipelineEvent) -> None:
        events[event.type] = event.data
        if event.type in (PipelineEventType.STT_END, PipelineEventType.ERROR):
            at_end.append(satellite.sent)

    await assist_pipeline.async_pipeline_from_audio_stream(
        hass, context=Context(), event_callback=seen, pipeline_id=pipeline_id,
        stt_metadata=satellite_audio(),
        stt_stream=satellite.stream(), end_stage=assist_pipeline.PipelineStage.STT,
    )
    return events, at_end[0]


async def _server(coda_server_factory: Any, head: Path, *args: str) -> Any:
    head.write_text("0")
    return coda_server_factory(*args, extra_env={"PYTHONPATH": str(ROOT / "tests" / "headdouble"),
                                                 "CODA_TEST_END_OF_TURN": str(head)})


async def test_the_command_ends_by_the_servers_decision(
    hass: HomeAssistant, coda_server_factory: Any, speech: Path, tmp_path: Path
) -> None:
    head = tmp_path / "score"
    server = await _server(coda_server_factory, head)
    pipeline_id = await _coda_pipeline(hass, server, tmp_path)
    words = _pcm(speech)  # the request, with 0.7 s of silence after
    spoken = (len(words) - int(0.7 * RATE)) // CHUNK

    def head_says(chunk: int) -> None:  # as a real head: done once the words are over
        head.write_text("1" if chunk >= spoken else "0")

    satellite = Satellite(np.concatenate([words, _silence(4.0)]), head_says)
    events, at_end = await _listen(hass, pipeline_id, satellite)
    assert events[PipelineEventType.STT_END]["stt_output"]["text"]
    if SERVER_OWNS_THE_END:
        assert events[PipelineEventType.STT_START]["audio_processing"]["requires_external_vad"] is False
        assert not VAD_EVENTS & set(events)  # Home Assistant's timer did not run
        assert at_end < satellite.total  # the transcript came while the audio still streamed
    else:  # the oldest release: its own timer, as before
        assert set(events) >= VAD_EVENTS


@pytest.mark.skipif(not SERVER_OWNS_THE_END, reason="Home Assistant's own timer ends the command in this release")
async def test_a_pause_the_head_calls_unfinished_and_the_bounds(
    hass: HomeAssistant, coda_server_factory: Any, speech: Path, tmp_path: Path
) -> None:
    head, config = tmp_path / "score", tmp_path / "coda.yaml"
    config.write_text("voice_processing:\n  stt:\n    no_speech_timeout: 1.0\n    max_command_seconds: 6.0\n"
                      "    end_of_turn_max_pause_ms: 3000\n")  # a head trusted through the 1.5 s pause
    server = await _server(coda_server_factory, head, "--config", str(config))
    pipeline_id = await _coda_pipeline(hass, server, tmp_path)
    words = _pcm(speech)[: int(1.4 * RATE)]
    second_starts = (len(words) + int(1.5 * RATE)) // CHUNK
    second_ends = second_starts + len(words) // CHUNK

    def head_says(chunk: int) -> None:  # "not done" through the pause, "done" after the second part
        head.write_text("1" if chunk >= second_ends else "0")

    satellite = Satellite(np.concatenate([words, _silence(1.5), words, _silence(2.0)]), head_says)
    events, at_end = await _listen(hass, pipeline_id, satellite)
    assert events[PipelineEventType.STT_END]["stt_output"]["text"]
    assert second_ends < at_end < satellite.total

    quiet = Satellite(_silence(3.0))  # nobody speaks: the command ends empty after about a second
    events, at_end = await _listen(hass, pipeline_id, quiet)
    assert events[PipelineEventType.ERROR]["code"] == "stt-no-text-recognized"
    assert at_end < 2.0 * RATE / CHUNK

    head.write_text("0")  # the user never stops: the command ends at its length bound
    chatter = Satellite(np.concatenate([words] * 5))
    events, at_end = await _listen(hass, pipeline_id, chatter)
    assert events[PipelineEventType.STT_END]["stt_output"]["text"]
    assert 6.0 * RATE / CHUNK <= at_end < chatter.total
