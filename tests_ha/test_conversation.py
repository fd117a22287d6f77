"""The Coda conversation agent against a real server process (tiny speech checkpoints; the
Ollama API test double scripts the LLM's tool calls, since no tool-calling model runs here):
device control through Home Assistant's LLM API, context sent to the server, the server going
away and coming back, and setup while it is away."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import intent
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.coda.config_flow import DEFAULT_OPTIONS
from custom_components.coda.const import DOMAIN, MAX_TOOL_ROUNDS

from .common import LLM_ONLY, setup_coda, setup_demo_lights, wait_for

AGENT = "conversation.coda_voice"


async def _ask(hass: HomeAssistant, text: str, language: str = "en", conversation_id: str | None = None) -> Any:
    return await conversation.async_converse(hass, text, conversation_id, Context(), language=language,
                                             agent_id=AGENT)


def _tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


async def test_device_control_only_for_exposed_lights(hass: HomeAssistant, coda_server: Any, ollama: Any) -> None:
    from tests.ollama_double import Reply

    await setup_demo_lights(hass, exposed=["light.bed_light"], hidden=["light.kitchen_lights"])
    await setup_coda(hass, coda_server, LLM_ONLY)
    assert hass.states.get("light.bed_light").state == STATE_OFF
    assert hass.states.get("light.kitchen_lights").state == STATE_ON

    ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light"})]), Reply(text="The bed light is on.")]
    result = await _ask(hass, "turn on the bed light")
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert result.response.speech["plain"]["speech"] == "The bed light is on."
    assert hass.states.get("light.bed_light").state == STATE_ON
    first = ollama.requests[0]
    offered = {tool["function"]["name"].split("__")[-1] for tool in first["tools"]}
    assert {"HassTurnOn", "HassTurnOff", "get_current_time"} <= offered  # Home Assistant's and the server's
    assert "turn on the bed light" in first["messages"][-1]["content"]
    answer = json.loads(_tool_messages(ollama.requests[1])[0]["content"])
    assert [target["id"] for target in answer["data"]["success"]] == ["light.bed_light"], answer

    ollama.requests.clear()
    ollama.script = [Reply(tool_calls=[("HassTurnOff", {"name": "Kitchen Lights"})]),
                     Reply(text="I cannot control that light.")]
    result = await _ask(hass, "turn off the kitchen lights")
    assert result.response.speech["plain"]["speech"] == "I cannot control that light."
    assert hass.states.get("light.kitchen_lights").state == STATE_ON  # not exposed: untouched
    refused = _tool_messages(ollama.requests[1])[0]["content"]
    assert "error" in refused.lower()


async def test_context_and_options(hass: HomeAssistant, coda_server: Any, ollama: Any) -> None:
    from tests.ollama_double import Reply

    await setup_coda(hass, coda_server, {**LLM_ONLY, "prompt": "You are the house robot Zed.", "verbosity": "detailed",
                                         "tone": "formal", "memory": False})
    ollama.script = [Reply(text="Good evening. All is well in the house tonight.")]
    result = await _ask(hass, "my name is Ada, how is the house?")
    assert result.response.speech["plain"]["speech"] == "Good evening. All is well in the house tonight."
    system = ollama.requests[0]["messages"][0]["content"]
    assert "You are the house robot Zed." in system  # the entry's prompt, rendered by Home Assistant
    assert "formal" in system and "complete, detailed answers" in system  # personality override
    # the conversation goes on with Home Assistant's conversation id; memory was off for it
    ollama.script = [Reply(text="You did not tell me.")]
    await _ask(hass, "what is my name?", conversation_id=result.conversation_id)
    messages = ollama.requests[1]["messages"]
    assert any(m["role"] == "assistant" and "All is well" in m["content"] for m in messages)
    assert "Ada" not in messages[0]["content"]  # nothing learned, nothing recalled


async def test_server_away_and_back(hass: HomeAssistant, coda_server: Any, ollama: Any) -> None:
    from tests.ollama_double import Reply

    entry = await setup_coda(hass, coda_server, LLM_ONLY)  # "hello" is for the server (Home Assistant's agent greets)
    coordinator = entry.runtime_data.coordinator
    assert hass.states.get(AGENT).state != STATE_UNAVAILABLE
    coda_server.terminate()
    result = await _ask(hass, "hello")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert result.response.speech["plain"]["speech"] == "The Coda Voice server cannot be reached right now."
    assert hass.states.get(AGENT).state == STATE_UNAVAILABLE
    german = await _ask(hass, "hallo", language="de")
    assert german.response.speech["plain"]["speech"] == "Der Coda-Voice-Server ist gerade nicht erreichbar."
    await wait_for(lambda: hass.states.get("sensor.coda_voice_conversations").state == STATE_UNAVAILABLE)

    coda_server.start()  # same ports, same data dir: the same server id
    await coordinator.async_refresh()  # what the 30 s poll does
    assert hass.states.get(AGENT).state != STATE_UNAVAILABLE
    ollama.script = [Reply(text="I am back.")]
    assert (await _ask(hass, "are you there?")).response.speech["plain"]["speech"] == "I am back."
    await wait_for(lambda: coordinator.pushing)  # the event stream reconnected by itself


async def test_setup_waits_for_the_server_and_reloads(hass: HomeAssistant, coda_server: Any, ollama: Any) -> None:
    from tests.ollama_double import Reply

    coda_server.terminate()
    entry = MockConfigEntry(domain=DOMAIN, title="Coda Voice", unique_id=coda_server.server_id, options=DEFAULT_OPTIONS,
                            data={"host": "127.0.0.1", "port": coda_server.port, "http_port": coda_server.http_port,
                                  "token": coda_server.token})
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY  # Home Assistant retries by itself
    coda_server.start()
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(AGENT).state == STATE_UNAVAILABLE
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    ollama.script = [Reply(text="Reloaded and ready.")]
    assert (await _ask(hass, "ready?")).response.speech["plain"]["speech"] == "Reloaded and ready."


async def test_tool_rounds_are_bounded(hass: HomeAssistant, coda_server_factory: Any, ollama: Any,
                                       tmp_path: Path) -> None:
    """A server that allows more tool rounds than the agent: the agent stops at its own bound
    and says so, instead of looping."""
    from tests.ollama_double import Reply

    config = tmp_path / "coda.yaml"
    config.write_text("voice_processing:\n  external_llm:\n    max_tool_iterations: 30\n")
    server = coda_server_factory("--config", str(config))
    await setup_demo_lights(hass, exposed=["light.bed_light"], hidden=[])
    await setup_coda(hass, server, LLM_ONLY)
    ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light", "floor": f"floor {n}"})])
                     for n in range(MAX_TOOL_ROUNDS + 5)]  # each call new (one made again ends the loop)
    result = await _ask(hass, "keep switching the bed light on")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert result.response.speech["plain"]["speech"] == "The answer needed more tool calls than allowed."
    assert len(ollama.requests) == MAX_TOOL_ROUNDS + 1  # the agent hung up after its last round
    assert hass.states.get("light.bed_light").state == STATE_ON


async def test_a_refused_request_ends_the_turn_at_once(hass: HomeAssistant, coda_server: Any, ollama: Any) -> None:
    """A request the server refuses (here a tone it does not know) ends the turn with the server's
    `error` event: a translated answer at once, never Home Assistant's 60 s silence timeout, and
    the server stays available."""
    import asyncio

    await setup_coda(hass, coda_server, {"tone": "grumpy", **LLM_ONLY})
    async with asyncio.timeout(5):
        result = await _ask(hass, "hello")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert result.response.speech["plain"]["speech"] == "The Coda Voice server could not take that request."
    assert not ollama.requests
    entity = hass.states.get("conversation.coda_voice")
    assert entity is not None and entity.state != STATE_UNAVAILABLE


async def test_moshi_only_claims_device_control_only_with_an_llm(
    hass: HomeAssistant, coda_server_factory: Any, tmp_path: Path
) -> None:
    """A moshi_only server sends device commands to its LLM, so the agent controls devices; one
    without an LLM cannot act, and the agent does not claim it can."""
    config = tmp_path / "coda.yaml"
    config.write_text("voice_processing:\n  moshi:\n    external_llm_enabled: false\n")
    server = coda_server_factory("--mode", "moshi_only", "--config", str(config))
    await setup_coda(hass, server)
    agent = hass.states.get(AGENT)
    assert agent is not None and not agent.attributes.get("supported_features")

    with_llm = coda_server_factory("--mode", "moshi_only")
    other = await setup_coda(hass, with_llm)
    entities = [e for e in er.async_entries_for_config_entry(er.async_get(hass), other.entry_id)
                if e.domain == "conversation"]
    state = hass.states.get(entities[0].entity_id)
    assert state is not None and state.attributes["supported_features"] & conversation.ConversationEntityFeature.CONTROL
