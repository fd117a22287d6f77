"""Coda Voice: a local voice assistant server (Kyutai speech models + an LLM) as a conversation
agent with device control, its analytics as sensors, and actions to see and erase what it
remembers about users."""

from __future__ import annotations

from types import MappingProxyType

from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import CONF_HOST, CONF_LLM_HASS_API, CONF_PORT, CONF_TOKEN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from .api import CodaClient, CodaError
from .config_flow import DEFAULT_AGENT
from .const import CONF_DUPLEX_CONTROL, CONF_HTTP_PORT, DEFAULT_AGENT_NAME, DOMAIN, SUBENTRY_AGENT
from .coordinator import CodaConfigEntry, CodaCoordinator, CodaRuntimeData, keep_connected, talk_page_agent
from .entity import server_device
from .homelink import HomeLink
from .services import async_setup_services

PLATFORMS = [Platform.BINARY_SENSOR, Platform.CONVERSATION, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """The memory actions, registered once whatever entries are set up."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: CodaConfigEntry) -> bool:
    """Connect to the server; retried by Home Assistant while the server is away. A refused
    token surfaces in the first refresh (reauthentication)."""
    client = CodaClient(async_get_clientsession(hass), entry.data[CONF_HOST], entry.data[CONF_PORT],
                        entry.data[CONF_HTTP_PORT], entry.data.get(CONF_TOKEN))
    try:
        server = await client.async_server_info()
    except CodaError as err:
        raise ConfigEntryNotReady(str(err)) from err
    coordinator = CodaCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = CodaRuntimeData(client, server, coordinator)
    # the server's device first: each agent's device is made under it
    dr.async_get(hass).async_get_or_create(config_entry_id=entry.entry_id, **server_device(entry))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    coordinator.async_start_push()
    # the home link: the home's words for the server's speech recognition, and, when talk-page
    # control is on, the tools of the first agent for its duplex sessions
    agent = talk_page_agent(entry)
    lends = bool(entry.options.get(CONF_DUPLEX_CONTROL, True) and agent is not None and agent.data.get(CONF_LLM_HASS_API))
    link = HomeLink(hass, entry, agent if lends else None)
    entry.async_create_background_task(hass, keep_connected(
        lambda: client.async_home_link(entry.title, entry.entry_id, str(entry.unique_id), link.answer, lends),
        f"home link of {client.http_url}",
    ), f"{DOMAIN} home link")
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    return True


async def _async_options_updated(hass: HomeAssistant, entry: CodaConfigEntry) -> None:
    await hass.config_entries.async_reload(entry.entry_id)


async def async_migrate_entry(hass: HomeAssistant, entry: CodaConfigEntry) -> bool:
    """Version 1 kept one agent's settings in the entry's options: they become the entry's first
    conversation agent (a subentry), and its entity moves to it with its entity id."""
    if entry.version > 2:
        return False  # a newer release's entry
    if entry.version == 1:
        options = dict(entry.options)
        agent = ConfigSubentry(data=MappingProxyType({**DEFAULT_AGENT, **{k: options[k] for k in DEFAULT_AGENT
                                                                          if k in options}}),
                               subentry_type=SUBENTRY_AGENT, title=DEFAULT_AGENT_NAME, unique_id=None)
        hass.config_entries.async_add_subentry(entry, agent)
        registry = er.async_get(hass)
        if entity_id := registry.async_get_entity_id("conversation", DOMAIN, f"{entry.unique_id}_conversation"):
            registry.async_update_entity(entity_id, new_unique_id=agent.subentry_id,
                                         config_subentry_id=agent.subentry_id)
        hass.config_entries.async_update_entry(
            entry, options={CONF_DUPLEX_CONTROL: options.get(CONF_DUPLEX_CONTROL, True)}, version=2)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: CodaConfigEntry) -> bool:
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
