"""What the names in an LLM's tool call mean in this home. Small models call Home Assistant's
intent tools with a device's name half right ("kitchen light", "entrance_light") and add an area
or floor of their own; Home Assistant then matches nothing. Constraints that name nothing here
are dropped, and a name close to one exposed name becomes that name; what still matches nothing
gets the closest exposed names, for the LLM's one corrective round."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import floor_registry as fr

NAME_CUTOFF = 0.75  # how close a name must be to an exposed one to stand for it
PLACE_CUTOFF = 0.8  # the same for an area or floor
SURE_CUTOFF = 0.9  # a name that stands for a device of another domain than the call says
MAX_NAMES = 20  # exposed names offered after a call that matched nothing


def _domains(arguments: dict[str, Any]) -> list[str] | None:
    domains = arguments.get("domain")
    if isinstance(domains, str):
        return [domains]
    return [d for d in domains if isinstance(d, str)] or None if isinstance(domains, list) else None


def exposed_entities(hass: HomeAssistant, domains: list[str] | None = None) -> dict[str, list[str]]:
    """The entities exposed to conversation agents (in `domains`): entity id -> name and aliases."""
    registry = er.async_get(hass)
    entities: dict[str, list[str]] = {}
    for state in hass.states.async_all(domains):
        if not async_should_expose(hass, conversation.DOMAIN, state.entity_id):
            continue
        names = entities[state.entity_id] = [state.name]
        if (entry := registry.async_get(state.entity_id)) is not None:
            names += [alias for alias in entry.aliases if isinstance(alias, str)]
    return entities


def exposed_names(hass: HomeAssistant, domains: list[str] | None = None) -> list[str]:
    """Names and aliases of the entities exposed to conversation agents (in `domains`)."""
    return [name for names in exposed_entities(hass, domains).values() for name in names]


def closest(wanted: str, candidates: Iterable[str], cutoff: float) -> str | None:
    """The candidate `wanted` stands for: the same words in any case, else the closest one."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    key = " ".join(wanted.replace("_", " ").lower().split())
    if key in by_lower:
        return by_lower[key]
    close = difflib.get_close_matches(key, list(by_lower), n=1, cutoff=cutoff)
    return by_lower[close[0]] if close else None


def _places(items: Iterable[Any]) -> list[str]:
    return [name for item in items for name in (item.name, *getattr(item, "aliases", ())) if isinstance(name, str)]


def area_names(hass: HomeAssistant) -> list[str]:
    """The names and aliases of this home's areas."""
    return _places(ar.async_get(hass).async_list_areas())


def mended_arguments(hass: HomeAssistant, arguments: dict[str, Any]) -> dict[str, Any]:
    """A call's target constraints as this home knows them: a name close to an exposed name
    becomes that name (and the call then targets that device alone, whatever area, floor or
    device classes the model guessed); an area or floor that names none here is dropped; a
    "name" that is an area's becomes the area; a name that is the call's domain ("lights") or the
    area itself next to an area, in a domain, means that area's devices of the domain."""
    if not {"name", "area", "floor"} & arguments.keys():
        return arguments
    mended = dict(arguments)
    areas = area_names(hass)
    floors = _places(fr.async_get(hass).async_list_floors())
    for key, places in (("area", areas), ("floor", floors)):
        if isinstance(mended.get(key), str):
            place = closest(mended[key], places, PLACE_CUTOFF)
            if place is None:
                del mended[key]
            else:
                mended[key] = place
    name = mended.get("name")
    if isinstance(name, str) and name.strip():
        device = closest(name, exposed_names(hass, _domains(mended)), NAME_CUTOFF)
        if device is None and _domains(mended) and (device := closest(name, exposed_names(hass), SURE_CUTOFF)):
            mended.pop("domain")  # the device is plainly named, the model guessed its domain wrong
        if device is not None:
            mended["name"] = device
            for constraint in ("area", "floor", "device_class"):  # a device named needs no other filter
                mended.pop(constraint, None)
        elif "area" not in mended and (area := closest(name, areas, PLACE_CUTOFF)) is not None:
            del mended["name"]
            mended["area"] = area
        elif "area" in mended and (domains := _domains(mended)) and (
                name.strip().lower().removesuffix("s") in domains or closest(name, [mended["area"]], PLACE_CUTOFF)):
            del mended["name"]  # "the lights" of an area, or the area named twice: the area's lights
            # (a name that matches nothing stays: the model may have invented the area too, and the
            # call must not act on a whole room)
    return mended


def similar_names(hass: HomeAssistant, arguments: dict[str, Any]) -> list[str]:
    """Exposed names closest to the one a call asked for, in its domains; all of them (up to
    MAX_NAMES) when none is close."""
    names = exposed_names(hass, _domains(arguments))
    wanted = str(arguments.get("name") or arguments.get("area") or "")
    return difflib.get_close_matches(wanted, names, n=5, cutoff=0.4) or sorted(set(names))[:MAX_NAMES]
