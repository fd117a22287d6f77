#!/usr/bin/env python3
"""Print the events of a running Coda Voice server live, as they come over its WebSocket
(`/api/events`): conversations, transcripts, routes, tool calls, answers, metrics.

    python scripts/voice_websocket_demo.py --http-url http://voicebox:10301
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import coda_client as coda


def describe(event: dict) -> str:
    data = event.get("data") or {}
    kind = event.get("event_type")
    if kind == "transcript":
        return f"{data.get('speaker')}: {data.get('text')}{'' if data.get('final', True) else ' …'}"
    if kind == "metrics":
        return (f"{data.get('total_conversations')} conversations, {data.get('total_turns')} turns, "
                f"average latency {data.get('average_latency_ms')} ms")
    if kind == "audio_chunk":
        return f"{data.get('samples')} samples at {data.get('level_dbfs')} dBFS"
    return json.dumps(data, ensure_ascii=False)


async def main(args: argparse.Namespace) -> int:
    server = coda.server_from(args)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    count = 0
    print(f"listening to {server.http_url}/api/events (Ctrl+C to stop)", flush=True)
    stream = coda.events(server, args.metrics_interval)
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            event = await asyncio.wait_for(anext(stream), timeout)
        except (TimeoutError, StopAsyncIteration):
            break
        if args.skip_audio and event.get("event_type") == "audio_chunk":
            continue
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("timestamp", time.time())))
        print(f"{stamp} {event.get('event_type'):<20} {describe(event)}", flush=True)
        count += 1
        if args.count and count >= args.count:
            break
    await stream.aclose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics-interval", type=float, default=5, help="seconds between metrics events (0: none)")
    parser.add_argument("--count", type=int, help="stop after this many events")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--skip-audio", action="store_true", help="leave out audio_chunk events")
    coda.add_server_arguments(parser)
    coda.run(main(parser.parse_args()))
