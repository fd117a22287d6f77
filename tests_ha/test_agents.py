"""Several conversation agents on one server (subentries, as in Home Assistant's own LLM
integrations): each with its instructions and mode, added only in a mode the server has loaded,
and today's entries (version 1: one agent in the entry's options) migrated."""

from __future__ import annotations

from typing import Any

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Context, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.coda.const import DOMAIN

from .common import LLM_ONLY, setup_coda


async def _ask(hass: HomeAssistant, agent: str, text: str) -> str:
    result = await conversation.async_converse(hass, text, None, Context(), language="en", agent_id=agent)
    return str(result.response.speech["plain"]["speech"])


def _system(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


async def test_two_agents_answer_with_their_own_prompts(hass: HomeAssistant, coda_server: Any, ollama: Any) -> None:
    from tests.ollama_double import Reply

    await setup_coda(hass, coda_server, {"prompt": "You are Ada, the house robot.", **LLM_ONLY},
                     more_agents={"Butler": {"prompt": "You are Jeeves, a butler.", "tone": "formal", **LLM_ONLY}})
    ollama.script = [Reply(text="Ada here."), Reply(text="Jeeves at your service.")]
    assert await _ask(hass, "conversation.coda_voice", "who are you") == "Ada here."
    assert await _ask(hass, "conversation.butler", "who are you") == "Jeeves at your service."
    ada, jeeves = (_system(request) for request in ollama.requests)
    assert "You are Ada" in ada and "Jeeves" not in ada
    assert "You are Jeeves" in jeeves and "Ada" not in jeeves and "formal" in jeeves.lower()


async def test_an_agent_is_added_only_in_a_mode_the_server_has_loaded(
    hass: HomeAssistant, coda_server: Any, ollama: Any
) -> None:
    entry = await setup_coda(hass, coda_server)
    assert entry.runtime_data.server.modes == ("hybrid", "adaptive")  # no Moshi in hybrid mode
    flow = await hass.config_entries.subentries.async_init((entry.entry_id, "conversation"), context={"source": "user"})
    assert flow["type"] is FlowResultType.FORM and flow["description_placeholders"] == {"modes": "hybrid, adaptive"}
    answers = {"name": "Quick", "prompt": "Be quick.", "verbosity": "brief", "tone": "server", "memory": False,
               "local_first": False}
    refused = await hass.config_entries.subentries.async_configure(flow["flow_id"], {**answers, "mode": "moshi_only"})
    assert refused["type"] is FlowResultType.FORM and refused["errors"] == {"mode": "mode_not_loaded"}
    made = await hass.config_entries.subentries.async_configure(flow["flow_id"], {**answers, "mode": "adaptive"})
    assert made["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert hass.states.get("conversation.quick") is not None
    await _ask(hass, "conversation.quick", "hi there")  # chit-chat in adaptive mode without Moshi: the fast path
    assert ollama.requests[-1]["options"]["num_predict"] == 60
    _, analytics = coda_server.http_get("/api/analytics", coda_server.token)
    assert analytics["routes"] == {"fast": 1}


async def test_a_version_1_entry_becomes_a_server_with_one_agent(
    hass: HomeAssistant, coda_server: Any, ollama: Any
) -> None:
    from tests.ollama_double import Reply

    legacy = {"llm_hass_api": ["assist"], "prompt": "You are the old agent.", "verbosity": "server",
              "tone": "casual", "memory": False, "local_first": False, "duplex_control": False}
    entry = MockConfigEntry(domain=DOMAIN, title="Coda Voice", unique_id=coda_server.server_id, version=1,
                            options=legacy, data={"host": "127.0.0.1", "port": coda_server.port,
                                                  "http_port": coda_server.http_port, "token": coda_server.token})
    entry.add_to_hass(hass)
    registry = er.async_get(hass)
    old = registry.async_get_or_create("conversation", DOMAIN, f"{coda_server.server_id}_conversation",
                                       config_entry=entry, suggested_object_id="coda_voice")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED and entry.version == 2
    (agent,) = entry.subentries.values()
    assert agent.subentry_type == "conversation" and agent.data["prompt"] == "You are the old agent."
    assert agent.data["tone"] == "casual" and agent.data["memory"] is False and agent.data["mode"] == "server"
    assert entry.options == {"duplex_control": False}
    moved = registry.async_get(old.entity_id)
    assert moved is not None and moved.unique_id == agent.subentry_id and moved.config_subentry_id == agent.subentry_id
    ollama.script = [Reply(text="Still here.")]
    assert await _ask(hass, old.entity_id, "are you there") == "Still here."  # the same entity id answers
    assert "You are the old agent." in _system(ollama.requests[0])
