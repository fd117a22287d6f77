"""Brightness as people say it and Home Assistant's own agent does not take: relative ("make the
bed light brighter", "turn up the office lights", "dim the kitchen lights a little" — it sets an
absolute brightness only, and hears "turn up" as a volume command), and a light named with a
level but no command it understood ("the office lights to 20 %"). English sentences, on exposed
lights only, before a turn goes to the LLM (a small model turns such a light on instead)."""

from __future__ import annotations

import logging
import re
from typing import Any

from homeassistant.components.light import ATTR_BRIGHTNESS_PCT, ATTR_BRIGHTNESS_STEP_PCT
from homeassistant.components.light import DOMAIN as LIGHT_DOMAIN
from homeassistant.const import ATTR_ENTITY_ID, SERVICE_TURN_ON
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import intent

from .targets import NAME_CUTOFF, PLACE_CUTOFF, closest, exposed_entities

_LOGGER = logging.getLogger(__name__)

STEP_PCT = 20  # brightness points per step; "a little" / "a bit" is half, "a lot" double
_UP = {"brighter", "lighter", "up", "brighten", "turn up", "raise"}
_POLITE = r"(?:(?:please|can you|could you|would you)\s+)?"
_HOW_MUCH = r"(?:\s+(?:a\s+)?(?P<much>little|bit|lot)(?:\s+more)?)?(?:\s+please)?"
_SENTENCES = (
    re.compile(_POLITE + r"(?:make|turn|set|put)\s+(?P<target>.+?)\s+"
               r"(?P<way>brighter|lighter|dimmer|darker|up|down)" + _HOW_MUCH + "$"),
    re.compile(_POLITE + r"(?P<way>brighten|dim|turn up|turn down|raise|lower)\s+(?P<target>.+?)" + _HOW_MUCH + "$"),
)
_LEVEL = re.compile(r"(?P<head>.+?)\s+(?:(?:to|at|are|is|on)\s+)?(?P<level>\d{1,3})(?:\s*%|\s+percent)(?:\s+please)?")
_QUESTION = frozenset({"is", "are", "what", "how", "which", "why", "when", "does", "do", "was", "were", "not"})
_LIGHTS = re.compile(r"^(?:the\s+|my\s+)?(?:(?P<before>.*?)\s+)?(?:lights?|lamps?)(?:\s+in\s+(?:the\s+)?(?P<after>.+))?$")


def words_of(text: str) -> str:
    """A transcript as the sentences read it: lower case, without punctuation."""
    return " ".join(re.sub(r"[^\w%' ]+", " ", text.lower()).split())


async def step_answer(hass: HomeAssistant, text: str, language: str, context: Context,
                      device_id: str | None = None) -> intent.IntentResponse | None:
    """Brighten or dim the lights `text` names (a light's name, an area's lights, or "the lights"
    of the satellite's area); None when `text` is not such a command on exposed lights. English."""
    words = words_of(text)
    for sentence in _SENTENCES:
        if (match := sentence.fullmatch(words)) is None:
            continue
        way, much = match["way"], match["much"]
        step = STEP_PCT * (0.5 if much in ("little", "bit") else 2 if much == "lot" else 1)
        lights = _lights(hass, match["target"], device_id)
        return await _set(hass, lights, {ATTR_BRIGHTNESS_STEP_PCT: step if way in _UP else -step}, context,
                          language, ("Brightened " if way in _UP else "Dimmed ") + " and ".join(lights.values()))
    return None


async def level_answer(hass: HomeAssistant, text: str, language: str, context: Context,
                       device_id: str | None = None) -> intent.IntentResponse | None:
    """A light named with a level and no command Home Assistant's agent understood ("the office
    lights to 20 %", "Then the office lights are 20 %" for "dim ..."): that light at that level.
    Not a question ("is the office light at 20 %"). English."""
    if (match := _LEVEL.fullmatch(words_of(text))) is None:
        return None
    head, level = match["head"].split(), int(match["level"])
    if head[0] in _QUESTION or level > 100:
        return None
    for words in (head, head[1:]):  # the named lights, after a word misheard in place of a verb
        if words and (lights := _lights(hass, " ".join(words), device_id)):
            return await _set(hass, lights, {ATTR_BRIGHTNESS_PCT: level}, context, language,
                              f"Set {' and '.join(lights.values())} to {level}%")
    return None


async def _set(hass: HomeAssistant, lights: dict[str, str], data: dict[str, Any], context: Context,
               language: str, speech: str) -> intent.IntentResponse | None:
    """Turn `lights` on with `data`; the answer, or None when there are none or they refused."""
    if not lights:
        return None
    try:
        await hass.services.async_call(LIGHT_DOMAIN, SERVICE_TURN_ON, {ATTR_ENTITY_ID: list(lights), **data},
                                       blocking=True, context=context)
    except HomeAssistantError as err:  # the lights refused: the turn is the LLM's, which can say so
        _LOGGER.warning("Could not set the brightness of %s: %s", ", ".join(lights), err)
        return None
    response = intent.IntentResponse(language=language)
    response.async_set_results(success_results=[
        intent.IntentResponseTarget(type=intent.IntentResponseTargetType.ENTITY, name=name, id=entity_id)
        for entity_id, name in lights.items()])
    response.async_set_speech(speech)
    return response


def _lights(hass: HomeAssistant, target: str, device_id: str | None) -> dict[str, str]:
    """The exposed lights `target` names: entity id -> name (its first, the state's)."""
    exposed = exposed_entities(hass, [LIGHT_DOMAIN])
    by_name = {name: entity_id for entity_id, names in exposed.items() for name in names}
    if (name := closest(target.removeprefix("the "), by_name, NAME_CUTOFF)) is not None:
        return {by_name[name]: exposed[by_name[name]][0]}
    if (lights := _LIGHTS.fullmatch(target)) is None:
        return {}
    place = lights["before"] or lights["after"]
    area_id = _area_id(hass, place) if place else _device_area(hass, device_id)
    if area_id is None:
        return {}
    return {entity_id: names[0] for entity_id, names in exposed.items() if _area_of(hass, entity_id) == area_id}


def _area_id(hass: HomeAssistant, place: str) -> str | None:
    areas = {name: area.id for area in ar.async_get(hass).async_list_areas() for name in (area.name, *area.aliases)}
    return areas[name] if (name := closest(place, areas, PLACE_CUTOFF)) is not None else None


def _device_area(hass: HomeAssistant, device_id: str | None) -> str | None:
    device = dr.async_get(hass).async_get(device_id) if device_id else None
    return device.area_id if device is not None else None


def _area_of(hass: HomeAssistant, entity_id: str) -> str | None:
    entry = er.async_get(hass).async_get(entity_id)
    if entry is None:
        return None
    return entry.area_id or _device_area(hass, entry.device_id)
