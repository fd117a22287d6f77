"""Talk-page (duplex) sessions control the house through the Coda integration's home link:
Home Assistant's own LLM API runs the tool calls, so an exposed demo light switches and an
unexposed one stays as it is; with the option off, the session has the server's tools only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar

from custom_components.coda.const import CONF_DUPLEX_CONTROL
from custom_components.coda.homelink import HomeLink

from .common import LLM_ONLY, setup_coda, setup_demo_lights, wait_for

HANDSHAKE, CONTROL = 0, 3


async def _home_of_sessions(server: Any) -> str | None:
    """The Home Assistant a new duplex session would use (from its handshake)."""
    async with server.session() as http, http.ws_connect(
        f"http://127.0.0.1:{server.http_port}/api/duplex?format=pcm"
    ) as ws:
        hello = await ws.receive_bytes(timeout=30)
        assert hello[0] == HANDSHAKE
        return json.loads(hello[1:])["home"]


async def _wait_for_home(server: Any, expected: str | None) -> None:
    """Until new duplex sessions use `expected` (the link is made or dropped in the background)."""
    for _ in range(100):
        if await _home_of_sessions(server) == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"duplex sessions never used {expected!r}")


async def _typed_turn(server: Any, text: str) -> list[dict[str, Any]]:
    """Type `text` into a duplex session; its control events until the answer is done."""
    events: list[dict[str, Any]] = []
    async with server.session() as http, http.ws_connect(
        f"http://127.0.0.1:{server.http_port}/api/duplex?format=pcm"
    ) as ws:
        await ws.receive_bytes(timeout=30)
        await ws.send_bytes(bytes([CONTROL]) + json.dumps({"action": "text", "text": text}).encode())
        while not events or events[-1].get("event") != "llm_done":
            message = await ws.receive_bytes(timeout=30)
            if message[0] == CONTROL:
                events.append(json.loads(message[1:]))
    return events


async def test_duplex_session_switches_only_exposed_lights(
    hass: HomeAssistant, coda_server_factory: Any, ollama: Any
) -> None:
    from tests.ollama_double import Reply

    server = coda_server_factory("--duplex")
    await setup_demo_lights(hass, exposed=["light.bed_light"], hidden=["light.kitchen_lights"])
    entry = await setup_coda(hass, server, LLM_ONLY)  # the LLM answers: its tools run through the link
    await _wait_for_home(server, entry.title)
    assert hass.states.get("light.bed_light").state == STATE_OFF

    ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light"})]), Reply(text="The bed light is on.")]
    events = await _typed_turn(server, "turn on the bed light")
    assert [e["event"] for e in events] == ["llm_turn", "tool_call", "tool_result", "llm_done"]
    assert events[0]["home"] == entry.title and events[2]["error"] is None
    await wait_for(lambda: hass.states.get("light.bed_light").state == STATE_ON)
    first = ollama.requests[0]
    offered = {tool["function"]["name"].split("__")[-1] for tool in first["tools"]}
    assert {"HassTurnOn", "get_current_time"} <= offered
    assert "Bed Light" in first["messages"][0]["content"]  # the exposed entities, in the prompt
    assert "Kitchen Lights" not in first["messages"][0]["content"]
    # the words the server's speech recognition is told to expect: exposed devices only, and areas
    ar.async_get(hass).async_create("Bedroom")
    (agent,) = entry.subentries.values()
    words = await HomeLink(hass, entry, agent).answer({"type": "vocabulary"})
    assert "Bed Light" in words["names"] and "Kitchen Lights" not in words["names"]
    assert "Bedroom" in words["areas"]

    ollama.script = [Reply(tool_calls=[("HassTurnOff", {"name": "Kitchen Lights"})]),
                     Reply(text="I cannot control that light.")]
    events = await _typed_turn(server, "turn off the kitchen lights")
    assert "error" in json.dumps(events[2]).lower()
    assert hass.states.get("light.kitchen_lights").state == STATE_ON  # not exposed: untouched

    hass.config_entries.async_update_entry(entry, options={**entry.options, CONF_DUPLEX_CONTROL: False})
    await _wait_for_home(server, None)  # the entry reloads without its link
    ollama.requests.clear()
    ollama.script = [Reply(text="Home control is not connected.")]
    events = await _typed_turn(server, "turn off the bed light")
    assert events[0]["home"] is None
    assert "not connected" in ollama.requests[0]["messages"][0]["content"]
    assert hass.states.get("light.bed_light").state == STATE_ON
