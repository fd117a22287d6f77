"""Analytics entities fed by a real server: pushed over its event stream, with units and
classes that Home Assistant graphs; one device per server; diagnostics without the token."""

from __future__ import annotations

from typing import Any

from homeassistant.components.sensor import ATTR_STATE_CLASS, SensorStateClass
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er

from custom_components.coda.const import DOMAIN
from custom_components.coda.diagnostics import async_get_config_entry_diagnostics

from .common import LLM_ONLY, setup_coda, wait_for


def _entity_id(hass: HomeAssistant, server: Any, key: str, domain: str = "sensor") -> str:
    entity_id = er.async_get(hass).async_get_entity_id(domain, DOMAIN, f"{server.server_id}_{key}")
    assert entity_id, key
    return entity_id


async def test_sensors_follow_the_server(hass: HomeAssistant, coda_server: Any, ollama: Any) -> None:
    from homeassistant.components import conversation

    from tests.ollama_double import Reply

    entry = await setup_coda(hass, coda_server, LLM_ONLY)  # turns the server answers: its analytics
    ids = {key: _entity_id(hass, coda_server, key) for key in (
        "conversations", "active_conversations", "turns", "llm_first_token_mean", "llm_first_token_p95",
        "tts_first_audio_mean", "memory_stt", "memory_tts", "memory_total", "models_loaded", "mode")}
    reachable = _entity_id(hass, coda_server, "llm_reachable", "binary_sensor")
    state = hass.states.get
    assert state(ids["conversations"]).state == "0"
    assert state(ids["conversations"]).attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL_INCREASING
    assert state(ids["mode"]).state == "hybrid"
    assert int(state(ids["models_loaded"]).state) >= 2 and state(ids["models_loaded"]).attributes["stt"] == "ready"
    assert float(state(ids["memory_total"]).state) > 50  # MiB: a process with torch loaded
    assert state(ids["memory_total"]).attributes[ATTR_UNIT_OF_MEASUREMENT] == "MiB"
    assert state(ids["llm_first_token_mean"]).attributes[ATTR_UNIT_OF_MEASUREMENT] == "ms"
    registry = er.async_get(hass)
    for noisy in ("memory_stt", "memory_tts"):  # moving with every snapshot: off until the user wants them
        assert registry.async_get(ids[noisy]).disabled_by is er.RegistryEntryDisabler.INTEGRATION
        assert state(ids[noisy]) is None

    ollama.script = [Reply(text="Hello there.")]
    await conversation.async_converse(hass, "hello", None, Context(), agent_id="conversation.coda_voice")
    # no poll is due for 30 s: the pushed snapshot (every 5 s) brings the new figures
    await wait_for(lambda: state(ids["turns"]).state == "1")
    assert state(ids["conversations"]).state == "1" and state(ids["active_conversations"]).state == "1"
    assert 0 < float(state(ids["llm_first_token_mean"]).state) <= float(state(ids["llm_first_token_p95"]).state)
    await wait_for(lambda: state(reachable).state == STATE_ON)  # the server checked Ollama
    assert state(reachable).attributes["model"] == "qwen3:8b"

    device = dr.async_get(hass).async_get(er.async_get(hass).async_get(ids["turns"]).device_id)
    assert device is not None and device.manufacturer == "Coda Voice"
    assert device.identifiers == {(DOMAIN, coda_server.server_id)}
    entities = er.async_entries_for_device(er.async_get(hass), device.id, include_disabled_entities=True)
    assert {e.entity_id for e in entities} >= {*ids.values(), reachable}
    agent = dr.async_get(hass).async_get(er.async_get(hass).async_get("conversation.coda_voice").device_id)
    assert agent is not None and agent.via_device_id == device.id  # each agent a device under the server's

    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["server"]["server_id"] == coda_server.server_id
    assert diagnostics["analytics"]["total_turns"] == 1
    assert [a["title"] for a in diagnostics["agents"]] == ["Coda Voice"]

    coda_server.terminate()
    await wait_for(lambda: state(ids["turns"]).state == STATE_UNAVAILABLE)  # the stream closed: polled, failed


async def test_diagnostics_redact_the_token(hass: HomeAssistant, coda_server_factory: Any) -> None:
    from pytest_homeassistant_custom_component.common import MockConfigEntry

    from custom_components.coda.config_flow import DEFAULT_OPTIONS

    server = coda_server_factory("--http-token", "living-room-secret")
    entry = MockConfigEntry(domain=DOMAIN, unique_id=server.server_id, options=DEFAULT_OPTIONS, data={
        "host": "127.0.0.1", "port": server.port, "http_port": server.http_port, "token": "living-room-secret"})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["entry"]["data"]["token"] == "**REDACTED**"
    assert "living-room-secret" not in repr(diagnostics)
    await wait_for(lambda: entry.runtime_data.coordinator.pushing)  # the event stream takes the token too


async def test_every_sensor_has_a_value_after_voice_turns(
    hass: HomeAssistant, coda_server: Any, ollama: Any, speech: Any, tmp_path: Any
) -> None:
    """Two voice turns through a real Assist pipeline (Coda STT and TTS through Home Assistant's
    wyoming integration, the Coda agent): every Coda sensor then has a value, and the speech
    figures are plausible — 0 < TTS first audio <= voice to voice, both under a turn's wall time."""
    import time

    from tests.ollama_double import Reply

    from .test_pipeline import ANSWER, _coda_pipeline, _run

    pipeline_id = await _coda_pipeline(hass, coda_server, tmp_path)
    ollama.default = Reply(text=ANSWER)
    walls = []
    for _ in range(2):
        started = time.monotonic()
        await _run(hass, pipeline_id, speech)
        walls.append((time.monotonic() - started) * 1000)
    coda = [e for e in er.async_entries_for_config_entry(er.async_get(hass), hass.config_entries.async_entries(
        DOMAIN)[0].entry_id) if e.domain in ("sensor", "binary_sensor") and e.disabled_by is None]
    await wait_for(lambda: all(hass.states.get(e.entity_id).state not in ("unknown", STATE_UNAVAILABLE)
                               for e in coda), timeout=30)
    value = {key: float(hass.states.get(_entity_id(hass, coda_server, key)).state)
             for key in ("tts_first_audio_mean", "tts_first_audio_p95", "voice_to_voice_mean", "voice_to_voice_p95")}
    assert 0 < value["tts_first_audio_mean"] <= value["voice_to_voice_mean"] < max(walls)
    assert 0 < value["tts_first_audio_p95"] <= value["voice_to_voice_p95"] < max(walls)
