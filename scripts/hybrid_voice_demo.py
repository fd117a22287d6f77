#!/usr/bin/env python3
"""One hybrid turn on a running Coda Voice server: speech (or text) -> Kyutai STT -> the LLM,
which may call a tool this demo offers (a thermostat) or one of the server's own (time, timers)
-> Kyutai TTS. Prints the route the server chose, each tool call, the answer and its timing.

    python scripts/hybrid_voice_demo.py --text "How warm is it in the living room?"
    python scripts/hybrid_voice_demo.py --wav question.wav --out answer.wav
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Any

import coda_client as coda

ROOMS = {"living room": 21.5, "kitchen": 23.0, "bedroom": 19.0}
THERMOSTAT = {"type": "function", "function": {
    "name": "get_room_temperature",
    "description": "The current temperature of a room, in degrees Celsius",
    "parameters": {"type": "object", "properties": {"room": {"type": "string", "enum": sorted(ROOMS)}},
                   "required": ["room"]},
}}


async def thermostat(name: str, arguments: dict[str, Any]) -> Any:
    """The tool this client executes when the server asks for it."""
    room = str(arguments.get("room", "")).lower()
    if name != "get_room_temperature" or room not in ROOMS:
        raise ValueError(f"no such room: {room!r}")
    return {"room": room, "temperature_c": ROOMS[room]}


async def watch(server: coda.Server, conversation_id: str, seen: list[dict[str, Any]]) -> None:
    """Collect this conversation's events (route, tool calls) from the event stream."""
    async for event in coda.events(server):
        if (event.get("data") or {}).get("conversation_id") == conversation_id:
            seen.append(event)


async def main(args: argparse.Namespace) -> int:
    server = coda.server_from(args)
    text = args.text
    if args.wav:
        text, stt_s = await coda.transcribe(server, args.wav.read_bytes())
        print(f"you said:  {text}   (STT final {stt_s * 1000:.0f} ms after the audio)")
    conversation_id = uuid.uuid4().hex
    seen: list[dict[str, Any]] = []
    watcher = asyncio.create_task(watch(server, conversation_id, seen))
    try:
        await asyncio.sleep(0.3)  # subscribed before the turn starts
        if watcher.done():
            watcher.result()  # the event stream failed: say why
        answer = await coda.converse(server, text, {"conversation_id": conversation_id, "tools": [THERMOSTAT]},
                                     run_tool=thermostat)
        await asyncio.sleep(0.3)  # the last events of the turn
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    for event in seen:
        data = event["data"]
        if event["event_type"] == "route":
            print(f"route:     {data['route']} ({data['reason']})")
        elif event["event_type"] == "tool_call":
            side = "this client" if any(c["name"] == data["name"] for c in answer.tool_calls) else "the server"
            print(f"tool call: {data['name']}({data['arguments']}) run by {side}")
    print(f"answer:    {answer.text}")
    if not answer.handled:
        return 1
    print(f"timing:    first text {(answer.first_text_s or answer.total_s) * 1000:.0f} ms, "
          f"whole answer {answer.total_s * 1000:.0f} ms")
    if args.out:
        wav, first_audio_s = await coda.synthesize(server, answer.text)
        args.out.write_bytes(wav)
        print(f"spoken:    {args.out} (first audio after {first_audio_s * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the request as text")
    source.add_argument("--wav", type=Path, help="the request as a WAV file")
    parser.add_argument("--out", type=Path, help="also speak the answer into this WAV file")
    coda.add_server_arguments(parser)
    coda.run(main(parser.parse_args()))
