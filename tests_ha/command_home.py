"""The home of the command corpus in a real Home Assistant: the demo platforms renamed and put in
areas, starting states set through services, spoken turns through an Assist pipeline, and the
scoring of a turn by entity states."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.components import assist_pipeline
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType, PipelineStage
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.components.light import ATTR_SUPPORTED_COLOR_MODES, ColorMode
from homeassistant.const import Platform
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .command_corpus import HOME, Expect
from .common import satellite_audio

CHUNK = 3200  # bytes of 16 kHz audio a satellite sends at once (100 ms)
PLATFORMS = [Platform.LIGHT, Platform.COVER, Platform.SWITCH, Platform.FAN]
SETTLE_SECONDS = 15.0  # demo covers move 10 % a second
HUE_TOLERANCE = 25
COLOR_MODES = {ColorMode.HS, ColorMode.RGB, ColorMode.RGBW, ColorMode.RGBWW, ColorMode.XY}


async def setup_home(hass: HomeAssistant) -> None:
    """The demo platforms; the corpus's entities renamed, in their areas, exposed; the rest hidden."""
    demo = MockConfigEntry(domain="demo", title="Demo", data={"name": "Demo"}, unique_id="Demo")
    demo.add_to_hass(hass)
    with patch("homeassistant.components.demo.COMPONENTS_WITH_CONFIG_ENTRY_DEMO_PLATFORM", PLATFORMS):
        assert await hass.config_entries.async_setup(demo.entry_id)
        await hass.async_block_till_done()
    entities, areas = er.async_get(hass), ar.async_get(hass)
    for entry in list(entities.entities.values()):
        if entry.entity_id not in HOME:
            async_expose_entity(hass, "conversation", entry.entity_id, False)
    for entity_id, (name, area) in HOME.items():
        assert entities.async_get(entity_id) is not None, f"the demo has no {entity_id}"
        entities.async_update_entity(entity_id, name=name, area_id=areas.async_get_or_create(area).id)
        async_expose_entity(hass, "conversation", entity_id, True)
    await hass.async_block_till_done()


async def set_states(hass: HomeAssistant, before: Expect) -> None:
    """Put entities in a starting state (lights on at a known brightness and colour, so a command
    that sets them is seen to), and wait for covers to get there."""
    for entity_id, wanted in before.items():
        domain = entity_id.split(".")[0]
        if domain == "cover":
            service = "open_cover" if wanted == "open" else "close_cover"
            await hass.services.async_call("cover", service, {"entity_id": entity_id}, blocking=True)
        elif wanted == "on" and domain == "light":
            modes = set(hass.states.get(entity_id).attributes.get(ATTR_SUPPORTED_COLOR_MODES) or [])
            data: dict[str, Any] = {"entity_id": entity_id, "brightness": 180}
            if modes & COLOR_MODES:
                data["hs_color"] = [180, 60]
            await hass.services.async_call("light", "turn_on", data, blocking=True)
        else:
            await hass.services.async_call(domain, f"turn_{wanted}", {"entity_id": entity_id}, blocking=True)
    await until(hass, before, SETTLE_SECONDS)


def holds(hass: HomeAssistant, entity_id: str, wanted: Any) -> bool:
    """Whether one entity is as `wanted` says: a state, or attribute targets (brightness in %,
    hue in degrees, cover position)."""
    state = hass.states.get(entity_id)
    if state is None:
        return False
    if isinstance(wanted, str):
        return state.state == wanted
    for key, target in wanted.items():
        if key == "brightness_pct":
            brightness = state.attributes.get("brightness")
            if state.state != "on" or brightness is None or abs(round(brightness / 2.55) - target) > 3:
                return False
        elif key == "hue":
            hs = state.attributes.get("hs_color")
            if state.state != "on" or hs is None or min(abs(hs[0] - target), 360 - abs(hs[0] - target)) > HUE_TOLERANCE:
                return False
        elif key in ("brightness_min", "brightness_max"):
            brightness = state.attributes.get("brightness")
            pct = round(brightness / 2.55) if state.state == "on" and brightness is not None else None
            if pct is None or (pct < target if key == "brightness_min" else pct > target):
                return False
        elif key == "position_max":
            position = state.attributes.get("current_position")
            if position is None or position > target:
                return False
        elif abs((state.attributes.get(key) or -100) - target) > 2:
            return False
    return True


async def _within(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` holds within `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def until(hass: HomeAssistant, expect: Expect, seconds: float) -> bool:
    """Whether `expect` holds within `seconds` (covers take time to move)."""
    return await _within(lambda: all(holds(hass, entity_id, wanted) for entity_id, wanted in expect.items()), seconds)


async def at_rest(hass: HomeAssistant) -> None:
    """Wait (up to SETTLE_SECONDS) for the covers an earlier command set moving to stop, so a
    question's "nothing changed" is not a cover still on its way."""
    await _within(lambda: not any(s.state in ("opening", "closing") for s in hass.states.async_all("cover")),
                  SETTLE_SECONDS)


def snapshot(hass: HomeAssistant) -> dict[str, tuple[str, Any, Any, Any]]:
    """The corpus's entities as a question must leave them."""
    return {entity_id: (s.state, s.attributes.get("brightness"), s.attributes.get("hs_color"),
                        s.attributes.get("current_position"))
            for entity_id in HOME if (s := hass.states.get(entity_id)) is not None}


def bad_speech(speech: str) -> str | None:
    """What a user must never hear, or None."""
    if "{" in speech or "response_type" in speech or '":' in speech:
        return "JSON"
    if "Unable to get response" in speech:
        return "Unable to get response"
    if "cannot be reached" in speech:
        return "server cannot be reached"
    return None


async def _audio(path: Path) -> AsyncIterator[bytes]:
    """A 16 kHz WAV's samples as a satellite streams them."""
    data = path.read_bytes()[44:]
    for offset in range(0, len(data), CHUNK):
        yield data[offset:offset + CHUNK]


async def pipeline(hass: HomeAssistant, engines: tuple[str | None, str | None], agent: str, name: str) -> str:
    """An Assist pipeline of the STT and TTS `engines` and the conversation `agent`; its id."""
    created = await assist_pipeline.async_create_default_pipeline(hass, stt_engine_id=engines[0],
                                                                  tts_engine_id=engines[1], pipeline_name=name)
    assert created is not None
    await assist_pipeline.async_update_pipeline(hass, created, conversation_engine=agent)
    return created.id


async def turn(hass: HomeAssistant, pipeline_id: str, wav: Path) -> dict[str, Any]:
    """One spoken turn, speech to text to answer: transcript, answer, seconds from the transcript
    to the answer."""
    marks: dict[str, Any] = {}

    def seen(event: PipelineEvent) -> None:
        if event.type is PipelineEventType.STT_END:
            marks["transcript"], marks["heard_at"] = event.data["stt_output"]["text"], time.monotonic()
        elif event.type is PipelineEventType.INTENT_END:
            marks["answer_at"] = time.monotonic()
            marks["answer"] = event.data["intent_output"]["response"]["speech"]["plain"]["speech"]
        elif event.type is PipelineEventType.ERROR:
            marks["error"] = event.data

    await assist_pipeline.async_pipeline_from_audio_stream(
        hass, context=Context(), event_callback=seen, pipeline_id=pipeline_id, stt_metadata=satellite_audio(),
        stt_stream=_audio(wav), end_stage=PipelineStage.INTENT,
    )
    if "answer_at" not in marks:
        return {"transcript": marks.get("transcript", ""), "answer": f"(pipeline error {marks.get('error')})",
                "seconds": float("nan")}
    return {"transcript": marks["transcript"], "answer": marks["answer"],
            "seconds": marks["answer_at"] - marks["heard_at"]}
