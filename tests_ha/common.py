"""Helpers shared by the Home Assistant tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

from homeassistant.components import stt
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.config_entries import ConfigSubentryData
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.coda.config_flow import DEFAULT_AGENT, DEFAULT_OPTIONS
from custom_components.coda.const import CONF_LOCAL_FIRST, DOMAIN, SUBENTRY_AGENT

LLM_ONLY = {CONF_LOCAL_FIRST: False}  # every turn to the server's LLM (Home Assistant's own agent never tries)


async def setup_coda(
    hass: HomeAssistant, server: Any, options: dict[str, Any] | None = None,
    more_agents: dict[str, dict[str, Any]] | None = None,
) -> MockConfigEntry:
    """A loaded Coda Voice config entry for `server` (a tests.serverproc.ServerProcess) with its
    conversation agent "Coda Voice" (`options`: its settings, and the entry's `duplex_control`)
    and `more_agents` (title -> settings)."""
    assert await async_setup_component(hass, "homeassistant", {})
    settings = {**DEFAULT_AGENT, **(options or {})}
    entry_options = {**DEFAULT_OPTIONS, **{k: settings.pop(k) for k in list(settings) if k in DEFAULT_OPTIONS}}
    agents = {"Coda Voice": settings, **{title: {**DEFAULT_AGENT, **agent} for title, agent in (more_agents or {}).items()}}
    entry = MockConfigEntry(
        domain=DOMAIN, title="Coda Voice", unique_id=server.server_id, version=2,
        data={"host": "127.0.0.1", "port": server.port, "http_port": server.http_port, "token": server.token},
        options=entry_options,
        subentries_data=[ConfigSubentryData(data=data, subentry_type=SUBENTRY_AGENT, title=title, unique_id=None)
                         for title, data in agents.items()],
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def wyoming_engines(hass: HomeAssistant, port: int) -> tuple[str | None, str | None]:
    """Home Assistant's wyoming integration for the server on `port`: its STT and TTS entities."""
    entry = MockConfigEntry(domain="wyoming", data={"host": "127.0.0.1", "port": port})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    return (registry.async_get_entity_id("stt", "wyoming", f"{entry.entry_id}-stt"),
            registry.async_get_entity_id("tts", "wyoming", f"{entry.entry_id}-tts"))


async def setup_demo_lights(hass: HomeAssistant, exposed: list[str], hidden: list[str]) -> None:
    """Home Assistant's demo lights; `exposed` / `hidden` from conversation agents."""
    demo = MockConfigEntry(domain="demo", title="Demo", data={"name": "Demo"}, unique_id="Demo")
    demo.add_to_hass(hass)
    with patch("homeassistant.components.demo.COMPONENTS_WITH_CONFIG_ENTRY_DEMO_PLATFORM", [Platform.LIGHT]):
        assert await hass.config_entries.async_setup(demo.entry_id)
        await hass.async_block_till_done()
    for entity_id in exposed:
        async_expose_entity(hass, "conversation", entity_id, True)
    for entity_id in hidden:
        async_expose_entity(hass, "conversation", entity_id, False)


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let Home Assistant run until `condition` holds (real time: the server is a real process)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def satellite_audio(language: str = "") -> stt.SpeechMetadata:
    """What a voice satellite streams: 16 kHz, 16-bit mono PCM ("" language: the pipeline's)."""
    return stt.SpeechMetadata(
        language=language, format=stt.AudioFormats.WAV, codec=stt.AudioCodecs.PCM,
        bit_rate=stt.AudioBitRates.BITRATE_16, sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
        channel=stt.AudioChannels.CHANNEL_MONO)
