"""Home Assistant's LLM API as the server expects it: tool definitions and plain JSON results."""

from __future__ import annotations

from typing import Any

from homeassistant.helpers import llm
from homeassistant.helpers.json import json_dumps
from homeassistant.util.json import json_loads

try:  # Home Assistant 2026.3 and later describe tool parameters with probatio
    from probatio import to_openapi as _to_openapi

    def _parameters(tool: llm.Tool, serializer: Any) -> dict[str, Any]:
        return _to_openapi(tool.parameters, custom_serializer=serializer, openapi_version="3.1.0")
except ImportError:  # earlier releases use voluptuous
    from voluptuous_openapi import convert

    def _parameters(tool: llm.Tool, serializer: Any) -> dict[str, Any]:
        schema: dict[str, Any] = convert(tool.parameters, custom_serializer=serializer)
        return schema


def tool_definitions(api: llm.APIInstance) -> list[dict[str, Any]]:
    """The LLM API's tools as OpenAI-style function definitions."""
    definitions = []
    for tool in api.tools:
        function = {"name": tool.name, "parameters": _parameters(tool, api.custom_serializer)}
        if tool.description:
            function["description"] = tool.description
        definitions.append({"type": "function", "function": function})
    return definitions


def plain_json(result: Any) -> Any:
    """A tool's answer as plain JSON (an llm.ToolResult from 2026.10, a plain object before;
    Home Assistant's encoder handles dates and the like)."""
    return json_loads(json_dumps(getattr(result, "data", result)))
