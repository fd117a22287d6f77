#!/usr/bin/env python3
"""Voice-activated tools with the Python API: the application registers its own tools (here a
garden sprinkler), the LLM calls them while answering a spoken (or typed) request, and the
answer says what was done.

    python examples/voice_tools_example.py --wav request.wav --answer answer.wav
    python examples/voice_tools_example.py --text "Water the roses for ten minutes."
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from example_args import config, parser

from wyoming_coda import VoiceManager
from wyoming_coda.turn.events import TurnDone


class Sprinklers:
    """A ToolManager: tool definitions for the LLM, and their execution."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}

    def schemas(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {
            "name": "start_sprinkler",
            "description": "Water a garden zone for some minutes",
            "parameters": {"type": "object", "required": ["zone", "minutes"], "properties": {
                "zone": {"type": "string", "enum": ["roses", "lawn", "vegetables"]},
                "minutes": {"type": "integer", "minimum": 1, "maximum": 60}}},
        }}]

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        zone, minutes = arguments["zone"], int(arguments["minutes"])
        if zone not in ("roses", "lawn", "vegetables"):
            raise ValueError(f"there is no sprinkler zone {zone!r}")
        self.running[zone] = minutes
        print(f"  [sprinkler] watering {zone} for {minutes} min")
        return {"zone": zone, "minutes": minutes, "status": "watering"}


async def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    source = cli.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, help="the spoken request")
    source.add_argument("--text", help="the request as text")
    cli.add_argument("--answer", type=Path, help="write the spoken answer here (with --wav)")
    args = cli.parse_args()

    voice_manager = VoiceManager(config(args, mode="hybrid"))
    sprinklers = Sprinklers()
    await voice_manager.set_tool_manager(sprinklers)
    await voice_manager.initialize()
    try:
        conversation_id = await voice_manager.start_conversation()
        if args.wav:
            response = await voice_manager.process_voice_input(conversation_id, args.wav.read_bytes())
            print(f"You said: {response.transcript}\nAnswer: {response.text_content}")
            if args.answer:
                args.answer.write_bytes(response.audio_data)
        else:
            async for event in voice_manager.process_text(conversation_id, args.text):
                if isinstance(event, TurnDone):
                    print(f"Answer: {event.text}")
        print(f"Sprinklers running: {sprinklers.running or 'none'}")
    finally:
        await voice_manager.close()


if __name__ == "__main__":
    asyncio.run(main())
