"""Home Assistant's own built-in `wyoming` integration as a client of our real server: the
config flow accepts it, and HA's STT, TTS and conversation entities work through it."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from homeassistant import config_entries
from homeassistant.components import conversation, stt, tts
from homeassistant.core import Context, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .common import satellite_audio


async def _speech(path: Path) -> AsyncIterator[bytes]:
    with wave.open(str(path)) as wav:
        frames = wav.readframes(wav.getnframes())
    for start in range(0, len(frames), 3200):
        yield frames[start:start + 3200]


async def test_config_flow_accepts_our_server(hass: HomeAssistant, coda_server) -> None:
    assert await async_setup_component(hass, "homeassistant", {})
    result = await hass.config_entries.flow.async_init("wyoming", context={"source": config_entries.SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"host": "127.0.0.1", "port": coda_server.port})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    assert result["title"] == "coda-stt"


async def test_stt_tts_and_conversation_entities(
    hass: HomeAssistant, coda_server, ollama, speech: Path, tmp_path: Path
) -> None:
    from tests.ollama_double import Reply

    hass.config.config_dir = str(tmp_path)
    assert await async_setup_component(hass, "homeassistant", {})
    entry = MockConfigEntry(domain="wyoming", data={"host": "127.0.0.1", "port": coda_server.port})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    ids = {e.domain: e.entity_id for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)}
    assert set(ids) == {"stt", "tts", "conversation"}

    result = await stt.async_get_speech_to_text_entity(hass, ids["stt"]).internal_async_process_audio_stream(
        satellite_audio("en"), _speech(speech))
    assert result.result is stt.SpeechResultState.SUCCESS and result.text  # tiny model: random words

    stream = tts.async_create_stream(hass, ids["tts"], language="en", options={tts.ATTR_PREFERRED_FORMAT: "wav"})
    stream.async_set_message("Turn on the kitchen light.")
    data = b"".join([chunk async for chunk in stream.async_stream_result()])
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getframerate() == 24000 and wav.getsampwidth() == 2
    # a streamed WAV (Home Assistant 2026.x) leaves the header's length at 0: count what follows it
    assert len(data) - data.index(b"data") - 8 > 1920 * 2  # more than one 80 ms frame

    # this agent is the server's plain handle program: its name says it is chat only (no tools,
    # no memory: Home Assistant's wyoming client cannot prove the server's token)
    assert "chat only" in (hass.states.get(ids["conversation"]).name or "").replace("-", " ")
    ollama.script = [Reply(text="The kitchen light is on.")]
    response = await conversation.async_converse(hass, "turn on the kitchen light", None, Context(),
                                                 agent_id=ids["conversation"])
    assert response.response.speech["plain"]["speech"] == "The kitchen light is on."
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_entities_recover_when_the_server_restarts(hass: HomeAssistant, coda_server, speech: Path) -> None:
    """The server restarted under Home Assistant (an update, a crash): its wyoming entities work
    again by themselves, with nothing reconfigured (the failure of Home Assistant core issue 136494
    to avoid) — the server comes back on the same ports with the same identity."""
    assert await async_setup_component(hass, "homeassistant", {})
    entry = MockConfigEntry(domain="wyoming", data={"host": "127.0.0.1", "port": coda_server.port})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    stt_id = next(e.entity_id for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
                  if e.domain == "stt")
    entity = stt.async_get_speech_to_text_entity(hass, stt_id)

    async def transcribe() -> stt.SpeechResult:
        return await entity.internal_async_process_audio_stream(satellite_audio("en"), _speech(speech))

    assert (await transcribe()).result is stt.SpeechResultState.SUCCESS
    assert coda_server.terminate() == 0
    assert (await transcribe()).result is stt.SpeechResultState.ERROR  # away: a clear failure, no hang
    coda_server.start()
    result = await transcribe()
    assert result.result is stt.SpeechResultState.SUCCESS and result.text
    assert entry.state is config_entries.ConfigEntryState.LOADED
