"""The spoken device-command corpus of `script/bench commands` (and its smoke run in the suite),
fixed before the agent was tuned against it.

The home is Home Assistant's demo platforms (lights, covers, switches, fans), renamed and put in
areas the way a user would. Each device command is spoken by espeak-ng (several voices and
speeds) and scored only by the entity states it must leave behind, from a known starting state.
Questions and impossible requests are a separate set, scored separately: no device may change,
and the answer must be a real one (an honest "I can't" is right)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# entity id -> (name a user gives it, area)
HOME: dict[str, tuple[str, str]] = {
    "light.bed_light": ("Bed Light", "Bedroom"),
    "light.ceiling_lights": ("Ceiling Lights", "Living Room"),
    "light.kitchen_lights": ("Kitchen Lights", "Kitchen"),
    "light.office_rgbw_lights": ("Office Lights", "Office"),
    "light.living_room_rgbww_lights": ("Living Room Lights", "Living Room"),
    "light.entrance_color_white_lights": ("Entrance Lights", "Hall"),
    "cover.kitchen_window": ("Kitchen Window", "Kitchen"),
    "cover.hall_window": ("Hall Window", "Hall"),
    "cover.living_room_window": ("Living Room Window", "Living Room"),
    "cover.garage_door": ("Garage Door", "Garage"),
    "switch.decorative_lights": ("Decorative Lights", "Living Room"),
    "switch.ac": ("AC", "Bedroom"),
    "fan.living_room_fan": ("Living Room Fan", "Living Room"),
    "fan.ceiling_fan": ("Ceiling Fan", "Bedroom"),
}

# What a state check accepts: "on"/"off"/"open"/"closed", or attribute tests: brightness_pct, hue
# (degrees), current_position (%), and the relative brightness_min / brightness_max / position_max.
Expect = dict[str, Any]

VOICES = (("en-us", 160), ("en-gb", 150), ("en-us+f3", 175), ("en-gb-x-rp", 165), ("en-us+m4", 185),
          ("en-029", 155))


@dataclass(frozen=True)
class Command:
    """One spoken request: the words, the state before (set by services), what must hold after."""

    text: str
    before: Expect
    after: Expect
    voice: str = "en-us"
    speed: int = 160


@dataclass(frozen=True)
class Question:
    """A question or an impossible request: no device may change; `answer_has` (any of, lowercase)
    must appear in the answer."""

    text: str
    answer_has: tuple[str, ...] = ()
    voice: str = "en-us"
    speed: int = 160
    tags: tuple[str, ...] = field(default=())


def _commands() -> list[Command]:
    on, off = "on", "off"
    rows: list[tuple[str, Expect, Expect]] = [
        ("turn off the kitchen lights", {"light.kitchen_lights": on}, {"light.kitchen_lights": off}),
        ("could you switch on the entrance lights", {"light.entrance_color_white_lights": off},
         {"light.entrance_color_white_lights": on}),
        ("set the ceiling lights to fifty percent", {"light.ceiling_lights": on},
         {"light.ceiling_lights": {"brightness_pct": 50}}),
        ("turn on the bed light", {"light.bed_light": off}, {"light.bed_light": on}),
        ("dim the office lights to twenty percent", {"light.office_rgbw_lights": on},
         {"light.office_rgbw_lights": {"brightness_pct": 20}}),
        ("turn the living room lights red", {"light.living_room_rgbww_lights": on},
         {"light.living_room_rgbww_lights": {"hue": 0}}),
        ("make the kitchen lights blue", {"light.kitchen_lights": on}, {"light.kitchen_lights": {"hue": 240}}),
        ("switch off the light in the bedroom", {"light.bed_light": on}, {"light.bed_light": off}),
        ("turn off the lights in the kitchen", {"light.kitchen_lights": on}, {"light.kitchen_lights": off}),
        ("turn on the lights in the office", {"light.office_rgbw_lights": off}, {"light.office_rgbw_lights": on}),
        ("open the kitchen window", {"cover.kitchen_window": "closed"}, {"cover.kitchen_window": "open"}),
        ("close the hall window", {"cover.hall_window": "open"}, {"cover.hall_window": "closed"}),
        ("open the garage door", {"cover.garage_door": "closed"}, {"cover.garage_door": "open"}),
        ("close the garage door", {"cover.garage_door": "open"}, {"cover.garage_door": "closed"}),
        ("set the living room window to fifty percent", {"cover.living_room_window": "closed"},
         {"cover.living_room_window": {"current_position": 50}}),
        ("turn on the AC", {"switch.ac": off}, {"switch.ac": on}),
        ("turn off the decorative lights", {"switch.decorative_lights": on}, {"switch.decorative_lights": off}),
        ("turn on the living room fan", {"fan.living_room_fan": off}, {"fan.living_room_fan": on}),
        ("turn off the ceiling fan", {"fan.ceiling_fan": on}, {"fan.ceiling_fan": off}),
        ("please turn the entrance lights off", {"light.entrance_color_white_lights": on},
         {"light.entrance_color_white_lights": off}),
        ("turn off the lights in the living room",
         {"light.ceiling_lights": on, "light.living_room_rgbww_lights": on},
         {"light.ceiling_lights": off, "light.living_room_rgbww_lights": off}),
        ("set the bed light to one hundred percent", {"light.bed_light": off},
         {"light.bed_light": {"brightness_pct": 100}}),
        ("set the office lights to seventy five percent", {"light.office_rgbw_lights": on},
         {"light.office_rgbw_lights": {"brightness_pct": 75}}),
        ("shut the kitchen window", {"cover.kitchen_window": "open"}, {"cover.kitchen_window": "closed"}),
        ("switch the AC off", {"switch.ac": on}, {"switch.ac": off}),
        ("can you turn on the ceiling lights", {"light.ceiling_lights": off}, {"light.ceiling_lights": on}),
        ("I want the kitchen lights on", {"light.kitchen_lights": off}, {"light.kitchen_lights": on}),
        ("turn the bed light green", {"light.bed_light": on}, {"light.bed_light": {"hue": 120}}),
        ("set the entrance lights to ten percent", {"light.entrance_color_white_lights": on},
         {"light.entrance_color_white_lights": {"brightness_pct": 10}}),
        ("open the hall window", {"cover.hall_window": "closed"}, {"cover.hall_window": "open"}),
        ("turn on the decorative lights", {"switch.decorative_lights": off}, {"switch.decorative_lights": on}),
        ("lights off in the office please", {"light.office_rgbw_lights": on}, {"light.office_rgbw_lights": off}),
        ("could you turn the living room lights on", {"light.living_room_rgbww_lights": off},
         {"light.living_room_rgbww_lights": on}),
        ("switch the ceiling fan on", {"fan.ceiling_fan": off}, {"fan.ceiling_fan": on}),
        # relative: from the starting brightness (71 %) or position
        ("make the bed light brighter", {"light.bed_light": on}, {"light.bed_light": {"brightness_min": 76}}),
        ("dim the kitchen lights a little", {"light.kitchen_lights": on},
         {"light.kitchen_lights": {"brightness_max": 66}}),
        ("turn up the office lights", {"light.office_rgbw_lights": on},
         {"light.office_rgbw_lights": {"brightness_min": 76}}),
        ("turn the living room lights down", {"light.living_room_rgbww_lights": on},
         {"light.living_room_rgbww_lights": {"brightness_max": 66}}),
        ("lower the hall window a bit", {"cover.hall_window": "open"}, {"cover.hall_window": {"position_max": 90}}),
    ]
    return [Command(text, before, after, *VOICES[i % len(VOICES)]) for i, (text, before, after) in enumerate(rows)]


def _questions() -> list[Question]:
    honest = ("can't", "cannot", "couldn't", "unable", "not ", "no ", "sorry", "don't")
    rows: list[tuple[str, tuple[str, ...]]] = [
        ("what time is it", tuple("0123456789")),
        ("what is two plus two", ("4", "four")),
        ("turn on the sauna", honest),
        ("unlock the front door", honest),
        ("start the dishwasher", honest),
        ("tell me a joke", ()),
        ("is the garage door open", ("open", "closed", "close")),
        ("set the swimming pool heater to thirty degrees", honest),
    ]
    return [Question(text, has, *VOICES[(i + 3) % len(VOICES)]) for i, (text, has) in enumerate(rows)]


COMMANDS = _commands()
QUESTIONS = _questions()
