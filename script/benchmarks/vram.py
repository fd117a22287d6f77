"""Memory per component: loads every model of adaptive mode and prints budget, weights and
what loading took (CUDA allocator bytes on a GPU; RSS share on a CPU).

Default: tiny checkpoints on the CPU. With `--real` the configured Kyutai repos are loaded
(on a GPU box with the weights in the Hugging Face cache)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path


def fmt(size: int | None) -> str:
    return "-" if size is None else f"{size / (1 << 20):10.1f} MiB"


async def main_async(real: bool, device: str) -> None:
    if not real:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="coda-bench-hf-")
        from tests.tinykit import build_tiny_hub

        build_tiny_hub(Path(tempfile.mkdtemp(prefix="coda-bench-")), Path(os.environ["HF_HUB_CACHE"]))
    from wyoming_coda.config import ServerConfig, VoiceConfig
    from wyoming_coda.voiceapi.manager import VoiceManager

    config = VoiceConfig(mode="adaptive", device=device, server=ServerConfig(data_dir=tempfile.mkdtemp()))
    manager = VoiceManager(config)
    try:
        await manager.initialize()
        report = manager.store.memory_report()
    finally:
        await manager.close()
    used = "allocated_bytes" if report["device"] == "cuda" else "rss_bytes"
    print(f"\nMemory per component on {report['device']} ({'real models' if real else 'tiny checkpoints'})")
    print(f"  {'component':<14} {'state':<9} {'budget':>14} {'weights':>14} {used.removesuffix('_bytes'):>14}")
    for name, figures in report["components"].items():
        print(f"  {name:<14} {figures['state']:<9} {fmt(figures['budget_bytes']):>14} "
              f"{fmt(figures.get('weights_bytes')):>14} {fmt(figures.get(used)):>14}")
    totals = {k: v for k, v in report.items() if k.endswith("_bytes")}
    print("  total: " + ", ".join(f"{k.removesuffix('_bytes')} {fmt(v).strip()}" for k, v in totals.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="load the configured Kyutai models")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    args = parser.parse_args()
    asyncio.run(main_async(args.real, args.device))


if __name__ == "__main__":
    sys.exit(main())
