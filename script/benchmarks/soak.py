"""Soak benchmark: one real server (tiny checkpoints, `--duplex`, the Ollama API test double as
its LLM) under mixed clients for a set time — real-time paced STT, streaming TTS, `handle` turns
with a tool call the client answers, duplex sessions, and an events subscriber that reads
slowly. It reports errors (must be 0), the server's memory, open files, threads and connections
left in CLOSE_WAIT at the start (after a warm-up) and at the end, GPU memory (allocated and
reserved, from the server's analytics) the same way with `--device cuda`, and latency
percentiles per minute, so a leak or a drift shows."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="coda-bench-hf-")

import aiohttp
import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.ollama_double import OllamaDouble, Reply
from tests.serverproc import ServerProcess
from tests.speech import SENTENCES, make_speech, read_wav
from tests.tinykit import build_tiny_hub

TOOL = {"type": "function", "function": {"name": "HassTurnOn", "description": "Turns on a device",
                                         "parameters": {"type": "object", "properties": {"name": {"type": "string"}}}}}
CHUNK = 640  # 20 ms of 16 kHz audio
KINDS = ("stt", "tts", "handle", "duplex")


class Soak:
    """Mixed clients against one server; latencies per minute, errors counted."""

    def __init__(self, server: ServerProcess, speech: list[Path], deadline: float) -> None:
        self.server = server
        self.speech = [read_wav(path) for path in speech]
        self.deadline = deadline
        self.start = time.monotonic()
        self.latency: dict[tuple[str, int], list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.events_seen = 0

    def note(self, kind: str, seconds: float) -> None:
        self.latency[(kind, int((time.monotonic() - self.start) // 60))].append(seconds)

    async def _read_until(self, client: AsyncTcpClient, last: str) -> list[Event]:
        events: list[Event] = []
        async with asyncio.timeout(60):
            while (event := await client.read_event()) is not None:
                events.append(event)
                if event.type == "error":
                    self.errors.append(f"{event.data}")
                    return events
                if event.type == last:
                    return events
        raise ConnectionError(f"closed before {last}")

    async def stt(self, i: int) -> None:
        """A satellite: speech in real time, then audio-stop; latency of the transcript."""
        pcm, rate, width, channels = self.speech[i % len(self.speech)]
        async with AsyncTcpClient("127.0.0.1", self.server.port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
            begun = time.monotonic()
            for n, offset in enumerate(range(0, len(pcm), CHUNK)):
                await client.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                                    audio=pcm[offset:offset + CHUNK]).event())
                await asyncio.sleep(max(0.0, begun + (n + 1) * 0.02 - time.monotonic()))
            stopped = time.monotonic()
            await client.write_event(AudioStop().event())
            events = await self._read_until(client, "transcript")
            if events[-1].type == "transcript":
                self.note("stt", time.monotonic() - stopped)

    async def tts(self, i: int) -> None:
        """Streaming synthesis of an answer; time to its first audio."""
        text = SENTENCES[i % len(SENTENCES)] + ". " + SENTENCES[(i + 1) % len(SENTENCES)] + "."
        async with AsyncTcpClient("127.0.0.1", self.server.port) as client:
            begun = time.monotonic()
            await client.write_event(SynthesizeStart().event())
            for word in text.split():
                await client.write_event(SynthesizeChunk(text=word + " ").event())
            await client.write_event(SynthesizeStop().event())
            events = await self._read_until(client, "synthesize-stopped")
            first = next((n for n, e in enumerate(events) if e.type == "audio-chunk"), None)
            if first is None:
                self.errors.append("tts: no audio")
            else:
                self.note("tts", time.monotonic() - begun)

    async def handle(self, i: int) -> None:
        """A Home Assistant-style turn with a tool call the client answers."""
        async with AsyncTcpClient("127.0.0.1", self.server.port) as client:
            begun = time.monotonic()
            await client.write_event(Transcript(text=f"turn on light {i}", context={"tools": [TOOL]}).event())
            async with asyncio.timeout(60):
                while (event := await client.read_event()) is not None:
                    if event.type == "coda-tool-call":
                        await client.write_event(Event("coda-tool-result", {"id": event.data["id"],
                                                                            "result": {"success": True}}))
                    elif event.type == "handled":
                        self.note("handle", time.monotonic() - begun)
                        return
                    elif event.type in ("not-handled", "error"):
                        self.errors.append(f"handle: {event.type} {event.data}")
                        return
            self.errors.append("handle: connection closed")

    async def duplex(self, i: int) -> None:
        """Two seconds of a duplex session in real time; the round trip of its frames."""
        pcm, rate, _, _ = self.speech[i % len(self.speech)]
        samples = np.frombuffer(pcm, dtype="<i2")[: 2 * rate]
        audio = np.interp(np.arange(0, len(samples), rate / 24000), np.arange(len(samples)), samples).astype("<i2")
        sent: dict[int, float] = {}
        async with self.server.session() as http, http.ws_connect(
                f"http://127.0.0.1:{self.server.http_port}/api/duplex?format=pcm") as ws:
            await ws.receive_bytes(timeout=30)

            async def read() -> None:
                async for message in ws:
                    if message.data[0] == 5:
                        self.errors.append(f"duplex: {message.data[1:]!r}")
                    elif message.data[0] == 4 and (frame := json.loads(message.data[1:])["frame"]) - 1 in sent:
                        self.note("duplex", time.monotonic() - sent.pop(frame - 1))

            reader = asyncio.create_task(read())
            begun = time.monotonic()
            for n in range(len(audio) // 1920):
                sent[n] = time.monotonic()
                await ws.send_bytes(bytes([1]) + audio[n * 1920:(n + 1) * 1920].tobytes())
                await asyncio.sleep(max(0.0, begun + (n + 1) * 0.08 - time.monotonic()))
            await asyncio.sleep(0.3)
            await ws.send_bytes(bytes([3]) + b'{"action": "close"}')
            await asyncio.wait_for(reader, 10)

    async def subscriber(self) -> None:
        """Reads the event stream slowly (its queue is bounded: it loses events, the server does not grow)."""
        async with self.server.session() as http, http.ws_connect(
                f"http://127.0.0.1:{self.server.http_port}/api/events?metrics_interval=1") as ws:
            while time.monotonic() < self.deadline:
                with_timeout = max(0.1, self.deadline - time.monotonic())
                try:
                    await ws.receive(timeout=with_timeout)
                except TimeoutError:
                    break
                self.events_seen += 1
                await asyncio.sleep(0.05)

    async def client(self, kind: str, index: int) -> None:
        """One client doing `kind` turns back to back until the deadline."""
        job: Callable[[int], Awaitable[None]] = getattr(self, kind)
        n = index
        while time.monotonic() < self.deadline:
            try:
                await job(n)
            except (OSError, TimeoutError, aiohttp.ClientError) as err:
                self.errors.append(f"{kind}: {type(err).__name__} {err}")
            n += len(KINDS)


def gpu_memory(server: ServerProcess) -> dict[str, int]:
    """The server's GPU memory (allocated / reserved bytes) from its analytics; empty on a CPU."""
    _, body = server.http_get("/api/analytics")
    usage = (body or {}).get("vram_usage") or {}
    return {key: int(usage[key]) for key in ("allocated_bytes", "reserved_bytes") if key in usage}


def process_state(pid: int, port: int) -> dict[str, int]:
    """RSS (KiB), open files, threads of the server, and its connections in CLOSE_WAIT."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    close_wait = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "08" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                close_wait += 1
    return {"rss_kib": rss, "files": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": len(os.listdir(f"/proc/{pid}/task")), "close_wait": close_wait}


async def main_async(clients: int, seconds: float, warmup: float, device: str) -> int:
    work = Path(tempfile.mkdtemp(prefix="coda-soak-"))
    print("building tiny checkpoints and test speech ...", flush=True)
    build_tiny_hub(work / "ckpt", Path(os.environ["HF_HUB_CACHE"]))
    speech = [make_speech(work / f"s{i}.wav", text, silence_after=0.3) for i, text in enumerate(SENTENCES[:4])]
    ollama = OllamaDouble()
    await ollama.start()
    ollama.default = Reply(tool_calls=[("HassTurnOn", {"name": "light"})])
    ollama.reply_for = lambda body: (  # type: ignore[method-assign]  # tool call, then the answer
        Reply(text="The light is on now.") if body["messages"][-1]["role"] == "tool"
        else OllamaDouble.reply_for(ollama, body))
    server = ServerProcess(["--duplex", "--llm-url", ollama.url, "--device", device], data_dir=work / "data")
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        soak = Soak(server, speech, time.monotonic() + warmup + seconds)
        tasks = [asyncio.create_task(soak.client(KINDS[i % len(KINDS)], i)) for i in range(clients)]
        tasks.append(asyncio.create_task(soak.subscriber()))
        await asyncio.sleep(warmup)
        start_state = process_state(pid, server.port) | gpu_memory(server)
        samples = [start_state]
        while time.monotonic() < soak.deadline:
            await asyncio.sleep(min(10.0, max(0.0, soak.deadline - time.monotonic())))
            samples.append(process_state(pid, server.port) | gpu_memory(server))
        await asyncio.gather(*tasks)
        await asyncio.sleep(1.0)  # the last connections close
        end_state = process_state(pid, server.port) | gpu_memory(server)
    finally:
        server.kill()
        await ollama.close()
    minutes = sorted({minute for _, minute in soak.latency})
    print(f"\nSoak: {clients} clients ({', '.join(KINDS)}) + a slow events subscriber, "
          f"{seconds:.0f} s after a {warmup:.0f} s warm-up (tiny checkpoints, this CPU)")
    print("  latency per minute, p50 / p95 ms (stt: after audio-stop; tts: first audio; handle: whole turn "
          "with a tool call; duplex: frame round trip)")
    for kind in KINDS:
        row = []
        for minute in minutes:
            values = soak.latency.get((kind, minute), [])
            if values:
                p95 = statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]
                row.append(f"m{minute}: {statistics.median(values) * 1000:6.1f} / {p95 * 1000:6.1f} ({len(values)})")
        print(f"  {kind:<7} " + "   ".join(row))
    growth = (end_state["rss_kib"] - start_state["rss_kib"]) / start_state["rss_kib"] * 100
    print(f"\n  errors                     {len(soak.errors)}")
    for error in soak.errors[:10]:
        print(f"    {error}")
    print(f"  RSS after warm-up / end    {start_state['rss_kib'] / 1024:.1f} MiB / {end_state['rss_kib'] / 1024:.1f} MiB"
          f"   growth {growth:+.1f} %   (goal < 5 %)")
    trace = " ".join(f"{sample['rss_kib'] / 1024:.0f}" for sample in samples)
    print(f"  RSS over the run (MiB)     {trace}")
    for key in ("allocated_bytes", "reserved_bytes"):
        if key in start_state:
            growth = (end_state[key] - start_state[key]) / max(start_state[key], 1) * 100
            trace = " ".join(f"{sample.get(key, 0) / 2**20:.0f}" for sample in samples)
            print(f"  GPU {key.split('_')[0]:<9} warm-up / end {start_state[key] / 2**20:.1f} MiB / "
                  f"{end_state[key] / 2**20:.1f} MiB   growth {growth:+.1f} %")
            print(f"  GPU {key.split('_')[0]} over the run (MiB) {trace}")
    for key in ("files", "threads", "close_wait"):
        print(f"  {key:<26} {start_state[key]} -> {end_state[key]}")
    print(f"  events the slow subscriber read   {soak.events_seen}")
    return 1 if soak.errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=600.0, help="measured time, after the warm-up")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline (caches and bounded registries fill)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    return asyncio.run(main_async(args.clients, args.seconds, args.warmup, args.device))


if __name__ == "__main__":
    sys.exit(main())
