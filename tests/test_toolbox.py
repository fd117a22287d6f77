"""The tools of one turn behind one name space, and the calls small models get wrong, mended."""

from __future__ import annotations

from typing import Any

from wyoming_coda.llm.base import ToolCall, parse_text_tool_calls, tool_schema
from wyoming_coda.turn.tools import RemoteTools, Toolbox

TURN_ON = tool_schema("intent__HassTurnOn", "Turns on a device",
                      {"type": "object", "properties": {"name": {"type": "string"}, "area": {"type": "string"}}})


async def test_a_prefix_left_out_and_undeclared_arguments_are_mended() -> None:
    ran: list[ToolCall] = []

    async def answer(call: ToolCall) -> Any:
        ran.append(call)
        return {"response_type": "action_done"}

    toolbox = Toolbox([RemoteTools([TURN_ON], answer)])
    call = ToolCall("HassTurnOn", {"name": "Bed Light", "floor": "2", "type": "object"})
    result, error = await toolbox.call(call)
    assert error is None and result == {"response_type": "action_done"}
    assert (ran[0].name, ran[0].arguments) == ("intent__HassTurnOn", {"name": "Bed Light"})
    assert ran[0] is call  # mended in place: the history shows the call as it ran
    assert await toolbox.call(ToolCall("HassTurnOff", {})) == (None, "unknown tool 'HassTurnOff'")


async def test_turning_a_light_on_with_a_brightness_sets_the_brightness() -> None:
    """Qwen2.5-0.5B's call for "dim the office lights to 20 %": `HassTurnOn` with a fan's
    `percentage`. Not for other domains, or without a number."""
    light_set = tool_schema("light__HassLightSet", "Sets a light", {"type": "object", "properties": {
        "name": {"type": "string"}, "domain": {"type": "array"}, "brightness": {"type": "integer"}}})
    ran: list[ToolCall] = []

    async def answer(call: ToolCall) -> Any:
        ran.append(call)
        return {"response_type": "action_done"}

    toolbox = Toolbox([RemoteTools([TURN_ON, light_set], answer)])
    await toolbox.call(ToolCall("intent__HassTurnOn", {"name": "office_light", "domain": ["light"], "percentage": 20}))
    await toolbox.call(ToolCall("HassTurnOn", {"name": "Ceiling Fan", "domain": ["fan"], "percentage": 20}))
    await toolbox.call(ToolCall("HassTurnOn", {"name": "Bed Light", "domain": "light", "brightness": "bright"}))
    assert [(c.name, c.arguments) for c in ran] == [
        ("light__HassLightSet", {"name": "office_light", "domain": ["light"], "brightness": 20}),
        ("intent__HassTurnOn", {"name": "Ceiling Fan"}),
        ("intent__HassTurnOn", {"name": "Bed Light"}),
    ]


def test_a_text_tool_call_without_the_prefix_is_still_a_call() -> None:
    calls = parse_text_tool_calls('{"name": "HassTurnOn", "arguments": {"name": "Bed Light"}}', {"intent__HassTurnOn"})
    assert calls is not None and [(c.name, c.arguments) for c in calls] == [("intent__HassTurnOn", {"name": "Bed Light"})]


def test_long_lists_of_values_are_left_out_of_what_the_llm_reads() -> None:
    classes = {"type": "array", "items": {"type": "string", "enum": [f"class{i}" for i in range(30)]}}
    domain = {"type": "array", "items": {"type": "string", "enum": ["light"]}}
    schema = tool_schema("intent__HassTurnOn", "Turns on", {"type": "object", "properties": {
        "device_class": classes, "domain": domain}})
    (read,) = RemoteTools([schema], lambda call: None).schemas()  # type: ignore[arg-type,return-value]
    properties = read["function"]["parameters"]["properties"]
    assert properties["device_class"] == {"type": "array", "items": {"type": "string"}}
    assert properties["domain"] == domain  # a short list stays: it guides the model
