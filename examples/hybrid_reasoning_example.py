#!/usr/bin/env python3
"""Hybrid reasoning with the Python API in adaptive mode: each request is routed — small talk
to Moshi, requests that need tools or thought to the full LLM turn (tools, memory), and a
failing LLM to a spoken fallback — and the answer streams as it is written.

    python examples/hybrid_reasoning_example.py "hi there" "why is the sky blue?"
"""

from __future__ import annotations

import asyncio

from example_args import config, parser

from wyoming_coda import VoiceManager
from wyoming_coda.turn.events import TextDelta, ToolCalled, TurnDone


async def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("requests", nargs="+", help="what the user says, one turn each")
    args = cli.parse_args()

    voice_manager = VoiceManager(config(args, mode="adaptive"))
    await voice_manager.initialize()
    try:
        conversation_id = await voice_manager.start_conversation()
        for text in args.requests:
            print(f"> {text}")
            async for event in voice_manager.process_text(conversation_id, text):
                if isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, ToolCalled):
                    print(f"[tool {event.call.name}({event.call.arguments})] ", end="", flush=True)
                elif isinstance(event, TurnDone):
                    timings = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in event.timings.items())
                    print(f"\n  route: {event.route}; {timings}")
    finally:
        await voice_manager.close()


if __name__ == "__main__":
    asyncio.run(main())
