#!/usr/bin/env python3
"""Latency of a running Coda Voice server, stage by stage: TTS first audio, STT final after the
end of speech (the server's own speech fed back), LLM first text and whole answer. Prints
median and 95th percentile over --rounds. `--bench KIND` runs the comparative benchmark
instead (script/bench: Coda against faster-whisper / Piper / the LLM alone, same machine).

    python scripts/benchmark_voice_latency.py --rounds 10 --uri tcp://voicebox:10300
    python scripts/benchmark_voice_latency.py --bench conversation
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import coda_client as coda

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "Turn on the lights in the kitchen and set them to fifty percent."


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name:<28} median {statistics.median(ordered) * 1000:7.0f} ms   p95 {p95 * 1000:7.0f} ms"


async def main(args: argparse.Namespace) -> int:
    server = coda.server_from(args)
    stages: dict[str, list[float]] = {"TTS first audio": [], "STT final after speech": [],
                                      "LLM first text": [], "LLM whole answer": []}
    for round_ in range(args.rounds):
        wav, tts_s = await coda.synthesize(server, SENTENCE)
        _, stt_s = await coda.transcribe(server, wav)
        answer = await coda.converse(server, args.question, {"conversation_id": f"bench-{round_}"})
        if not answer.handled:
            print(f"error: the server could not answer: {answer.text}")
            return 1
        stages["TTS first audio"].append(tts_s)
        stages["STT final after speech"].append(stt_s)
        stages["LLM first text"].append(answer.first_text_s or answer.total_s)
        stages["LLM whole answer"].append(answer.total_s)
    print(f"{server.uri}, {args.rounds} rounds")
    for name, seconds in stages.items():
        print(summary(name, seconds))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--question", default="In one sentence: what is a good temperature for a bedroom?")
    parser.add_argument("--bench", choices=("speech", "conversation", "duplex"),
                        help="run script/bench KIND (starts its own servers) instead of probing --uri")
    coda.add_server_arguments(parser)
    arguments = parser.parse_args()
    if arguments.bench:
        os.execv(ROOT / "script" / "bench", [str(ROOT / "script" / "bench"), arguments.bench])
    coda.run(main(arguments))
