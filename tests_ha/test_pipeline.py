"""An Assist pipeline end to end, all on the real server: audio in -> Coda STT (through Home
Assistant's built-in wyoming integration) -> the Coda conversation agent (a tool call that
switches an exposed demo light; the LLM is the Ollama API test double) -> Coda TTS -> audio out;
on the Kyutai profile's modes and on the CPU profile."""

from __future__ import annotations

import asyncio
import inspect
import io
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from homeassistant.components import assist_pipeline, tts
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .common import LLM_ONLY, satellite_audio, setup_coda, setup_demo_lights

TURN_SECONDS = 120  # far above a turn's few seconds here
ANSWER = "The bed light is on now. I switched it on for you, and everything else stays as it was."


async def _audio(path: Path) -> AsyncIterator[bytes]:
    with wave.open(str(path)) as wav:
        frames = wav.readframes(wav.getnframes())
    for start in range(0, len(frames), 640):  # 20 ms chunks, as a satellite sends them
        yield frames[start:start + 640]


async def _coda_pipeline(hass: HomeAssistant, server: Any, tmp_path: Path) -> str:
    """A pipeline of Coda STT, the Coda agent and Coda TTS (Home Assistant's wyoming integration
    as the client of the server's asr and tts); returns its id."""
    hass.config.config_dir = str(tmp_path)
    await setup_coda(hass, server, LLM_ONLY)  # the pipeline through the server, every turn
    wyoming = MockConfigEntry(domain="wyoming", data={"host": "127.0.0.1", "port": server.port})
    wyoming.add_to_hass(hass)
    assert await hass.config_entries.async_setup(wyoming.entry_id)
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    stt_id = registry.async_get_entity_id("stt", "wyoming", f"{wyoming.entry_id}-stt")
    tts_id = registry.async_get_entity_id("tts", "wyoming", f"{wyoming.entry_id}-tts")
    pipeline = await assist_pipeline.async_create_default_pipeline(
        hass, stt_engine_id=stt_id, tts_engine_id=tts_id, pipeline_name="Coda")
    assert pipeline is not None
    await assist_pipeline.async_update_pipeline(hass, pipeline, conversation_engine="conversation.coda_voice")
    return pipeline.id


async def _run(hass: HomeAssistant, pipeline_id: str, speech: Path) -> tuple[dict[Any, Any], bytes]:
    """One voice turn through the pipeline: its events' data by type, and the answer's WAV."""
    events: list[PipelineEvent] = []
    async with asyncio.timeout(TURN_SECONDS):  # a stalled turn fails here, it does not hang the suite
        await assist_pipeline.async_pipeline_from_audio_stream(
            hass, context=Context(), event_callback=events.append,
            stt_metadata=satellite_audio(),
            stt_stream=_audio(speech), pipeline_id=pipeline_id,
            tts_audio_output={tts.ATTR_PREFERRED_FORMAT: "wav"},
        )
    types = [event.type for event in events]
    assert PipelineEventType.ERROR not in types, [e.data for e in events if e.type is PipelineEventType.ERROR]
    data = {event.type: event.data for event in events}
    data["progress"] = [event.data for event in events if event.type is PipelineEventType.INTENT_PROGRESS]
    stream = tts.async_get_stream(hass, data[PipelineEventType.TTS_END]["tts_output"]["token"])
    async with asyncio.timeout(TURN_SECONDS):
        return data, b"".join([chunk async for chunk in stream.async_stream_result()])


def _counter(server: Any, name: str) -> float:
    _, body = server.http_fetch("/metrics")
    match = re.search(rf"^{name} (\S+)$", body.decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_moshi_only_pipeline_answers_in_moshis_voice(
    hass: HomeAssistant, coda_server_factory: Any, ollama: Any, speech: Path, tmp_path: Path
) -> None:
    """Moshi answers from the user's own audio; the satellite hears Moshi, not Kyutai TTS."""
    config = tmp_path / "coda.yaml"
    config.write_text("voice_processing:\n  moshi:\n    reply_max_seconds: 3\n")
    server = coda_server_factory("--mode", "moshi_only", "--config", str(config))
    data, audio = await _run(hass, await _coda_pipeline(hass, server, tmp_path), speech)
    assert data[PipelineEventType.STT_END]["stt_output"]["text"]
    answer = data[PipelineEventType.INTENT_END]["intent_output"]["response"]["speech"]["plain"]["speech"]
    assert answer  # Moshi's words (the tiny random Moshi's, here)
    assert not ollama.requests  # no LLM in moshi_only mode
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getframerate() == 24000
    assert len(audio) - audio.index(b"data") - 8 > 1920 * 2  # streamed PCM after the header
    assert _counter(server, "coda_moshi_spoken_answers_total") == 1  # coda-tts played Moshi's own audio
    assert _counter(server, 'coda_routes_total{route="moshi"}') == 1


async def test_assist_pipeline_end_to_end(
    hass: HomeAssistant, coda_server: Any, ollama: Any, speech: Path, tmp_path: Path
) -> None:
    from tests.ollama_double import Reply

    await setup_demo_lights(hass, exposed=["light.bed_light"], hidden=[])
    pipeline_id = await _coda_pipeline(hass, coda_server, tmp_path)
    ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light"})]), Reply(text=ANSWER)]
    assert hass.states.get("light.bed_light").state == STATE_OFF
    data, audio = await _run(hass, pipeline_id, speech)

    heard = data[PipelineEventType.STT_END]["stt_output"]["text"]
    assert heard  # the tiny random model says random words, but they reach the agent as they are
    assert ollama.requests[0]["messages"][-1]["content"] == heard
    assert hass.states.get("light.bed_light").state == STATE_ON  # the tool call ran inside Home Assistant

    progress = data["progress"]
    streamed = "".join((p.get("chat_log_delta") or {}).get("content") or "" for p in progress)
    assert streamed == ANSWER  # streamed piece by piece into the pipeline
    assert any(p.get("tts_start_streaming") for p in progress)  # so speech could start before the end
    speech_out = data[PipelineEventType.INTENT_END]["intent_output"]["response"]["speech"]["plain"]["speech"]
    assert speech_out == ANSWER

    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getframerate() == 24000 and wav.getsampwidth() == 2 and wav.getnchannels() == 1
    assert len(audio) - audio.index(b"data") - 8 > 24000 * 2 // 2  # over half a second of speech


async def test_assist_pipeline_on_the_cpu_profile(
    hass: HomeAssistant, coda_server_factory: Any, cpu_profile_args: list[str], ollama: Any, speech: Path,
    tmp_path: Path,
) -> None:
    """`--profile cpu`: Whisper (real tiny.en weights) hears the request, the agent's tool call
    switches the light, Pocket TTS speaks the answer in a voice cloned from a sample."""
    from tests.ollama_double import Reply

    server = coda_server_factory(*cpu_profile_args)
    await setup_demo_lights(hass, exposed=["light.bed_light"], hidden=[])
    pipeline_id = await _coda_pipeline(hass, server, tmp_path)
    ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light"})]), Reply(text=ANSWER)]
    data, audio = await _run(hass, pipeline_id, speech)
    heard = data[PipelineEventType.STT_END]["stt_output"]["text"]
    assert "kitchen light" in heard.lower(), heard
    assert hass.states.get("light.bed_light").state == STATE_ON
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getframerate() == 24000 and wav.getsampwidth() == 2 and wav.getnchannels() == 1
    assert len(audio) - audio.index(b"data") - 8 > 1920 * 2 * 4  # Pocket TTS frames streamed


async def _typed(hass: HomeAssistant, pipeline_id: str, text: str) -> tuple[str, bytes]:
    """A typed turn through the pipeline (intent, then TTS), as the Assist dialog runs one: the
    answer's text and its WAV."""
    from homeassistant.components.assist_pipeline.pipeline import PipelineInput, PipelineRun, PipelineStage
    from homeassistant.helpers import chat_session

    events: list[PipelineEvent] = []
    async with asyncio.timeout(TURN_SECONDS):  # a stalled turn fails here, it does not hang the suite
        with chat_session.async_get_chat_session(hass) as session:
            run = PipelineRun(hass, context=Context(), pipeline=assist_pipeline.async_get_pipeline(hass, pipeline_id),
                              start_stage=PipelineStage.INTENT, end_stage=PipelineStage.TTS,
                              event_callback=events.append, tts_audio_output={tts.ATTR_PREFERRED_FORMAT: "wav"})
            pipeline_input = PipelineInput(run=run, session=session, intent_input=text)
            if "validate" in inspect.signature(pipeline_input.execute).parameters:  # 2026.10
                await pipeline_input.execute(validate=True)
            else:
                await pipeline_input.validate()
                await pipeline_input.execute()
    data = {event.type: event.data for event in events}
    assert PipelineEventType.ERROR not in data, data[PipelineEventType.ERROR]
    answer = data[PipelineEventType.INTENT_END]["intent_output"]["response"]["speech"]["plain"]["speech"]
    stream = tts.async_get_stream(hass, data[PipelineEventType.TTS_END]["tts_output"]["token"])
    async with asyncio.timeout(TURN_SECONDS):
        return answer, b"".join([chunk async for chunk in stream.async_stream_result()])


async def test_adaptive_pipeline_routes_chitchat_to_moshi_and_commands_to_the_llm(
    hass: HomeAssistant, coda_server_factory: Any, ollama: Any, tmp_path: Path
) -> None:
    """`adaptive`: a greeting is answered by Moshi, whose own audio the satellite hears; a device
    command goes to the LLM, whose tool call switches the light, spoken by Kyutai TTS."""
    from tests.ollama_double import Reply

    config = tmp_path / "coda.yaml"
    config.write_text("voice_processing:\n  moshi:\n    reply_max_seconds: 3\n")
    server = coda_server_factory("--mode", "adaptive", "--config", str(config))
    await setup_demo_lights(hass, exposed=["light.bed_light"], hidden=[])
    pipeline_id = await _coda_pipeline(hass, server, tmp_path)

    answer, audio = await _typed(hass, pipeline_id, "hello there")
    assert answer and not ollama.requests  # Moshi's words (the tiny random Moshi's), no LLM
    assert _counter(server, 'coda_routes_total{route="moshi"}') == 1
    assert _counter(server, "coda_moshi_spoken_answers_total") == 1  # coda-tts played Moshi's own audio
    assert len(audio) - audio.index(b"data") - 8 > 1920 * 2

    ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light"})]), Reply(text="The bed light is on.")]
    answer, audio = await _typed(hass, pipeline_id, "turn on the bed light")
    assert answer == "The bed light is on." and hass.states.get("light.bed_light").state == STATE_ON
    assert _counter(server, 'coda_routes_total{route="llm"}') == 1
    assert _counter(server, "coda_moshi_spoken_answers_total") == 1  # this answer: Kyutai TTS
    assert len(audio) - audio.index(b"data") - 8 > 24000  # half a second of speech at least
