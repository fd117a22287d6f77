#!/usr/bin/env python3
"""Memory of a running Coda Voice server per component against its budget
(`vram_allocation`) and against the spec's 32 GB plan (Moshi 8 GB, external LLM 20 GB,
system 4 GB). Exits 1 when a component uses more than its budget. `--bench` runs
script/bench vram instead (loads each component in a fresh process and measures it).

    python scripts/test_vram_allocation.py --uri tcp://voicebox:10300
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import coda_client as coda

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
SPEC_PLAN_GIB = {"moshi": 8, "external_llm": 20, "system": 4}


def gib(value: Any) -> str:
    return f"{value / GIB:8.2f} GiB" if isinstance(value, int | float) else f"{'-':>12}"


async def main(args: argparse.Namespace) -> int:
    server = coda.server_from(args)
    usage = (await coda.http_json(server, "/api/analytics"))["vram_usage"]
    used_key = "allocated_bytes" if usage["device"] == "cuda" else "rss_bytes"
    print(f"device: {usage['device']} ({'CUDA allocator' if usage['device'] == 'cuda' else 'process memory, RSS'})")
    print(f"{'component':<14}{'state':<10}{'budget':>12}{'weights':>12}{'used':>12}  spec plan")
    over = []
    for name, component in usage["components"].items():
        used, budget = component.get(used_key), component.get("budget_bytes")
        plan = SPEC_PLAN_GIB.get(name)
        print(f"{name:<14}{component.get('state', ''):<10}{gib(budget)}{gib(component.get('weights_bytes'))}"
              f"{gib(used)}  {f'{plan} GiB' if plan else ''}")
        if isinstance(used, int) and isinstance(budget, int) and used > budget:
            over.append(name)
    print(f"{'total':<24}{'':>12}{'':>12}{gib(usage.get(used_key))}  {sum(SPEC_PLAN_GIB.values())} GiB")
    if "utilization_percent" in usage:
        print(f"GPU utilisation: {usage['utilization_percent']}%")
    if over:
        print(f"over budget: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", action="store_true", help="run script/bench vram instead of asking --uri")
    coda.add_server_arguments(parser)
    arguments = parser.parse_args()
    if arguments.bench:
        os.execv(ROOT / "script" / "bench", [str(ROOT / "script" / "bench"), "vram"])
    coda.run(main(arguments))
