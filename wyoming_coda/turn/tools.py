"""Tools the LLM can call: the spec's tool manager interface, the server's own local tools
(time, date, timers) and tools whose calls are answered by the client (Home Assistant)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..events import EventBus, TimerRang
from ..llm.base import ToolCall, bare_name, offered_name, tool_name, tool_schema


class ToolManager(Protocol):
    """What `VoiceManager.set_tool_manager` takes."""

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI-style tool definitions."""

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run a tool; the result is JSON-serialisable. Raise to report an error."""


class ToolError(Exception):
    """A tool failed; the message goes back to the LLM."""


@dataclass
class _Timer:
    name: str
    ends_at: float
    task: asyncio.Task[None]


TIMER_TOOLS = frozenset({"start_timer", "list_timers", "cancel_timer"})
OnTimer = Callable[[str, str | None], Awaitable[None]]  # (timer name, conversation id) when it rings


class LocalTools:
    """Tools that need nothing but the server: current time and date, timers."""

    def __init__(self, on_timer: OnTimer | None = None) -> None:
        self._timers: dict[str, _Timer] = {}
        self._on_timer = on_timer

    def for_turn(self, conversation_id: str, timers: bool = True) -> ToolManager:
        """These tools for one turn: its timers ring for its conversation; `timers` False
        leaves them out (Home Assistant's own timers ring on the satellite)."""
        return _TurnTools(self, conversation_id, timers)

    def schemas(self) -> list[dict[str, Any]]:
        return [
            tool_schema("get_current_time", "The current local time and date.", {"type": "object", "properties": {}}),
            tool_schema(
                "start_timer", "Start a named countdown timer.",
                {"type": "object", "properties": {
                    "name": {"type": "string", "description": "what the timer is for"},
                    "seconds": {"type": "integer", "description": "duration in seconds"}},
                 "required": ["seconds"]},
            ),
            tool_schema("list_timers", "The running timers and their remaining seconds.",
                        {"type": "object", "properties": {}}),
            tool_schema("cancel_timer", "Cancel a running timer by name.",
                        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        ]

    async def call(self, name: str, arguments: dict[str, Any], conversation_id: str | None = None) -> Any:
        if name == "get_current_time":
            now = datetime.now().astimezone()
            return {"time": now.strftime("%H:%M"), "date": now.strftime("%A %d %B %Y"), "timezone": str(now.tzinfo)}
        if name == "start_timer":
            return self._start_timer(str(arguments.get("name") or "timer"), arguments.get("seconds"), conversation_id)
        if name == "list_timers":
            clock = time.monotonic()
            return {"timers": [{"name": t.name, "remaining_seconds": round(t.ends_at - clock)}
                               for t in self._timers.values()]}
        if name == "cancel_timer":
            timer = self._timers.pop(str(arguments.get("name")), None)
            if timer is None:
                raise ToolError(f"no timer named {arguments.get('name')!r}")
            timer.task.cancel()
            return {"cancelled": timer.name}
        raise ToolError(f"unknown tool {name!r}")

    def _start_timer(self, name: str, seconds: Any, conversation_id: str | None) -> dict[str, Any]:
        if not isinstance(seconds, int | float) or not 0 < seconds <= 86400:
            raise ToolError("seconds must be a number between 1 and 86400")
        if name in self._timers:
            self._timers.pop(name).task.cancel()

        async def ring() -> None:
            await asyncio.sleep(seconds)
            self._timers.pop(name, None)
            if self._on_timer is not None:
                await self._on_timer(name, conversation_id)

        self._timers[name] = _Timer(name, time.monotonic() + seconds, asyncio.create_task(ring()))
        return {"started": name, "seconds": seconds}

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.task.cancel()
        self._timers.clear()


class _TurnTools:
    """LocalTools as one turn sees them (see `LocalTools.for_turn`)."""

    def __init__(self, tools: LocalTools, conversation_id: str, timers: bool) -> None:
        self._tools, self._conversation_id, self._timers = tools, conversation_id, timers

    def schemas(self) -> list[dict[str, Any]]:
        return [s for s in self._tools.schemas() if self._timers or tool_name(s) not in TIMER_TOOLS]

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        if not self._timers and name in TIMER_TOOLS:
            raise ToolError(f"unknown tool {name!r}")
        return await self._tools.call(name, arguments, self._conversation_id)


BRIGHTNESS_KEYS = ("brightness", "brightness_pct", "percentage")  # how small models write a light's level
MAX_ENUM = 8  # longer lists of allowed values are left out of the schema the LLM reads


def compact(schema: Any) -> Any:
    """A tool schema without its long lists of allowed values (Home Assistant lists some thirty
    device classes under each intent tool): they cost prompt tokens on every turn, and small
    models copy them into their calls. The client still checks the values."""
    if isinstance(schema, list):
        return [compact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: compact(value) for key, value in schema.items()
            if not (key == "enum" and isinstance(value, list) and len(value) > MAX_ENUM)}


class RemoteTools:
    """Tools described by the client, each call answered by the client (Home Assistant runs
    them through its LLM API, so only exposed entities are reachable)."""

    def __init__(self, schemas: list[dict[str, Any]], call: Callable[[ToolCall], Awaitable[Any]]) -> None:
        self._schemas = [compact(schema) for schema in schemas]
        self._call = call

    def schemas(self) -> list[dict[str, Any]]:
        return self._schemas

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self._call(ToolCall(name=name, arguments=arguments))

    async def run(self, call: ToolCall) -> Any:
        """Run a call the LLM made, under the id it has in the conversation history."""
        return await self._call(call)


class Toolbox:
    """The tools of one turn: several managers behind one name space (first one wins)."""

    def __init__(self, managers: list[ToolManager]) -> None:
        self._owner: dict[str, ToolManager] = {}
        self._schemas: list[dict[str, Any]] = []
        self._parameters: dict[str, set[str]] = {}  # the arguments each tool declares
        for manager in managers:
            for schema in manager.schemas():
                name = tool_name(schema)
                if name and name not in self._owner:
                    self._owner[name] = manager
                    self._schemas.append(schema)
                    properties = (schema.get("function", schema).get("parameters") or {}).get("properties")
                    if isinstance(properties, dict):
                        self._parameters[name] = set(properties)

    def schemas(self) -> list[dict[str, Any]]:
        return self._schemas

    def _mend(self, call: ToolCall) -> None:
        """What small models get wrong about a call, mended in place (the history then shows the
        call as it ran): a name without its prefix (`HassTurnOn` for Home Assistant 2026.10's
        `intent__HassTurnOn`), "turn on" a light with a brightness (which Home Assistant's
        `HassLightSet` sets), arguments the tool does not declare (which its schema refuses)."""
        call.name = offered_name(call.name, self._owner)
        self._brightness_is_set(call)
        declared = self._parameters.get(call.name)
        if declared is not None:
            call.arguments = {k: v for k, v in call.arguments.items() if k in declared}

    def _brightness_is_set(self, call: ToolCall) -> None:
        """`HassTurnOn` on lights with a brightness (or a fan's `percentage`, copied from the
        wrong tool) for "dim the office lights to 20 %": the light set to it by `HassLightSet`."""
        domains = call.arguments.get("domain")
        lights = domains in ("light", ["light"])
        level = next((call.arguments[key] for key in BRIGHTNESS_KEYS if key in call.arguments), None)
        light_set = offered_name("HassLightSet", self._owner)
        if (bare_name(call.name) != "HassTurnOn" or not lights or light_set not in self._owner
                or not isinstance(level, int | float) or isinstance(level, bool) or not 0 <= level <= 100):
            return
        call.name = light_set
        call.arguments = {**{k: v for k, v in call.arguments.items() if k not in BRIGHTNESS_KEYS},
                          "brightness": round(level)}

    async def call(self, call: ToolCall) -> tuple[Any, str | None]:
        """(result, error): errors are returned, not raised, so the LLM can react to them."""
        self._mend(call)
        manager = self._owner.get(call.name)
        if manager is None:
            return None, f"unknown tool {call.name!r}"
        try:
            if isinstance(manager, RemoteTools):  # the client sees the id the LLM history has
                return await manager.run(call), None
            return await manager.call(call.name, call.arguments), None
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - any tool failure goes back to the LLM
            return None, str(err) or type(err).__name__


TimerListener = Callable[[str], Awaitable[None]]


class TimerBells:
    """Where a server timer rings: an event for every subscriber, and the listener of its
    conversation when it has one (a duplex session says it in Moshi's voice)."""

    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._listeners: dict[str, TimerListener] = {}

    async def ring(self, name: str, conversation_id: str | None) -> None:
        self._events.publish(TimerRang(name, conversation_id))
        listener = self._listeners.get(conversation_id or "")
        if listener is not None:
            await listener(name)

    def listen(self, conversation_id: str, listener: TimerListener) -> Callable[[], None]:
        """Call `listener(name)` when a timer of this conversation rings; returns the way to stop."""
        self._listeners[conversation_id] = listener

        def stop() -> None:
            self._listeners.pop(conversation_id, None)

        return stop
