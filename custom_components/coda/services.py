"""Service actions: what the server remembers about Home Assistant's users, seen and erased.

The server keys memory by the Home Assistant user of each turn; turns without a user (voice
satellites) share the `household` memory. Each action picks a user (default: the user who
calls it, else the household) and a Coda entry (needed only when several are set up); they
are admin-only, since one user's memory is no one else's business.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.service import async_register_admin_service

from .api import CodaError, CodaRequestError
from .const import DOMAIN, HOUSEHOLD
from .coordinator import CodaConfigEntry

try:  # Home Assistant 2026.3 and later validate with probatio (voluptuous' successor, same API)
    import probatio as vol
except ImportError:  # pragma: no cover - older releases
    import voluptuous as vol  # type: ignore[no-redef]

SERVICE_LIST_MEMORIES = "list_memories"
SERVICE_FORGET_MEMORY = "forget_memory"
SERVICE_FORGET_MEMORIES = "forget_memories"
ATTR_CONFIG_ENTRY_ID = "config_entry_id"
ATTR_USER_ID = "user_id"
ATTR_MEMORY_ID = "memory_id"

_USER_SCHEMA = {vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string, vol.Optional(ATTR_USER_ID): cv.string}
USER_SCHEMA = vol.Schema(_USER_SCHEMA)
FORGET_ONE_SCHEMA = vol.Schema({**_USER_SCHEMA, vol.Required(ATTR_MEMORY_ID): vol.All(vol.Coerce(int), vol.Range(min=1))})


def _entry(hass: HomeAssistant, call: ServiceCall) -> CodaConfigEntry:
    """The Coda entry the call is for: the one named, or the only one loaded."""
    if entry_id := call.data.get(ATTR_CONFIG_ENTRY_ID):
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="unknown_entry",
                                         translation_placeholders={"entry_id": entry_id})
        if entry.state is not ConfigEntryState.LOADED:
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="entry_not_loaded",
                                         translation_placeholders={"name": entry.title})
        return entry
    loaded = hass.config_entries.async_loaded_entries(DOMAIN)
    if len(loaded) != 1:
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="no_entry" if not loaded else "several_entries")
    return loaded[0]


def _user(call: ServiceCall) -> str:
    """The user named, else the caller, else the household."""
    return str(call.data.get(ATTR_USER_ID) or call.context.user_id or HOUSEHOLD)


def _server_error(err: CodaError, entry: CodaConfigEntry) -> HomeAssistantError:
    if isinstance(err, CodaRequestError):  # the server answered, e.g. memory is off there
        key, placeholders = "memory_refused", {"error": str(err)}
    else:
        key, placeholders = "memory_unreachable", {"name": entry.title, "error": str(err)}
    return HomeAssistantError(translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders)


async def _user_name(hass: HomeAssistant, user_id: str) -> str | None:
    user = await hass.auth.async_get_user(user_id)
    return user.name if user is not None else None


async def _list_memories(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry, user_id = _entry(hass, call), _user(call)
    client = entry.runtime_data.client
    try:
        memories = await client.async_memories(user_id)
        users = await client.async_memory_users()
    except CodaError as err:
        raise _server_error(err, entry) from err
    return {
        "user_id": user_id,
        "user_name": await _user_name(hass, user_id),
        "memories": [_memory(fact) for fact in memories["facts"]],
        "conversation_turns": memories["turns"],
        "users": [{"user_id": u["user_id"], "user_name": await _user_name(hass, u["user_id"]),
                   "memories": u["facts"], "conversation_turns": u["turns"]} for u in users],
    }


def _memory(fact: dict[str, Any]) -> dict[str, Any]:
    created = datetime.fromtimestamp(float(fact["created"]), UTC).isoformat()
    return {"id": fact["id"], "kind": fact["kind"], "text": fact["text"], "created": created}


async def _forget(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    """One memory (`memory_id`), or everything about the user."""
    entry, user_id = _entry(hass, call), _user(call)
    memory_id = call.data.get(ATTR_MEMORY_ID)
    try:
        forgotten = await entry.runtime_data.client.async_forget(user_id, memory_id)
    except CodaRequestError as err:
        if err.code == "unknown_memory":
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="unknown_memory",
                                         translation_placeholders={"memory_id": str(memory_id)}) from err
        raise _server_error(err, entry) from err
    except CodaError as err:
        raise _server_error(err, entry) from err
    return {"user_id": user_id, "forgotten": forgotten}


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the memory actions (once, for every Coda entry)."""
    async_register_admin_service(hass, DOMAIN, SERVICE_LIST_MEMORIES, partial(_list_memories, hass), USER_SCHEMA,
                                 SupportsResponse.ONLY)
    async_register_admin_service(hass, DOMAIN, SERVICE_FORGET_MEMORY, partial(_forget, hass), FORGET_ONE_SCHEMA,
                                 SupportsResponse.OPTIONAL)
    async_register_admin_service(hass, DOMAIN, SERVICE_FORGET_MEMORIES, partial(_forget, hass), USER_SCHEMA,
                                 SupportsResponse.OPTIONAL)
