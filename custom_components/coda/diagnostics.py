"""Diagnostics: the entry and its agents, the server's identity and its latest analytics (token
redacted)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_TOKEN
from homeassistant.core import HomeAssistant

from .coordinator import CodaConfigEntry, agents

TO_REDACT = {CONF_TOKEN}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: CodaConfigEntry) -> dict[str, Any]:
    runtime = entry.runtime_data
    return {
        "entry": {"data": async_redact_data(dict(entry.data), TO_REDACT), "options": dict(entry.options)},
        "agents": [{"title": agent.title, "options": dict(agent.data)} for agent in agents(entry)],
        "server": asdict(runtime.server),
        "event_stream_connected": runtime.coordinator.pushing,
        "last_update_success": runtime.coordinator.last_update_success,
        "analytics": runtime.coordinator.data,
    }
