"""Speech benchmark: our server (tiny Kyutai checkpoints, CPU) against wyoming-faster-whisper
(Whisper tiny.en) and wyoming-piper (en_US-joe-medium), all measured in this run.

- STT: transcript latency after audio-stop, audio sent in real time (as Home Assistant does),
  with and without 0.7 s of trailing silence (Home Assistant's end-of-speech timeout);
- TTS: time to first audio;
- 1 / 4 / 8 concurrent clients: wall time, as a ratio to one client and to the peer.

Tiny random checkpoints measure the serving path (protocol, resampling, batching, flush), not
the real models' compute: real models belong on a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="coda-bench-hf-")

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize

from tests.peers import start_whisper_and_piper
from tests.serverproc import ServerProcess, free_port
from tests.speech import SENTENCES, make_speech, read_wav
from tests.tinykit import build_tiny_hub

CHUNK_SAMPLES = 1024


async def stt_once(port: int, wav: Path, realtime: bool) -> tuple[float, float]:
    """(seconds from audio-stop to transcript, seconds from the first event to transcript)."""
    audio, rate, width, channels = read_wav(wav)
    step = CHUNK_SAMPLES * width * channels
    async with AsyncTcpClient("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        for start in range(0, len(audio), step):
            chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=audio[start:start + step])
            await client.write_event(chunk.event())
            if realtime:
                await asyncio.sleep(CHUNK_SAMPLES / rate)
        await client.write_event(AudioStop().event())
        t_stop = time.perf_counter()
        while (event := await client.read_event()) is not None and event.type != "transcript":
            pass
        t_end = time.perf_counter()
    return t_end - t_stop, t_end - t0


async def stt_text(port: int, wav: Path) -> str:
    """The transcript of a WAV file (sent at once)."""
    audio, rate, width, channels = read_wav(wav)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        await client.write_event(AudioChunk(rate=rate, width=width, channels=channels, audio=audio).event())
        await client.write_event(AudioStop().event())
        while (event := await client.read_event()) is not None:
            if event.type == "transcript":
                return str(event.data.get("text", ""))
    return ""


async def tts_once(port: int, text: str) -> tuple[float, float]:
    """(seconds to the first audio chunk, seconds to audio-stop)."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        await client.write_event(Synthesize(text=text).event())
        first = None
        while (event := await client.read_event()) is not None and event.type != "audio-stop":
            if event.type == "audio-chunk" and first is None:
                first = time.perf_counter() - t0
        return first or float("nan"), time.perf_counter() - t0


async def wall(n: int, job: Callable[[int], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(job(i) for i in range(n)))
    return time.perf_counter() - t0


def _counts(text: str) -> list[int]:
    return sorted({int(n) for n in text.split(",")})


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def row(label: str, ours: float, peer: float, unit: str = "ms") -> str:
    return f"  {label:<44} {ours:9.1f} {unit}  {peer:9.1f} {unit}  ratio {ours / peer:5.2f}"


async def main_async(peers_venv: Path, rounds: int, clients: list[int]) -> None:
    work = Path(tempfile.mkdtemp(prefix="coda-bench-"))
    print("building tiny checkpoints and test speech ...", flush=True)
    build_tiny_hub(work / "ckpt", Path(os.environ["HF_HUB_CACHE"]))
    tail = [make_speech(work / f"tail{i}.wav", t, silence_after=0.7) for i, t in enumerate(SENTENCES)]
    bare = [make_speech(work / f"bare{i}.wav", t) for i, t in enumerate(SENTENCES)]

    coda = ServerProcess([], data_dir=work / "coda-data")
    coda.start()
    whisper_port, piper_port = free_port(), free_port()
    peers = start_whisper_and_piper(peers_venv, whisper_port, piper_port, work)
    try:
        # warm every server once
        await stt_once(coda.port, bare[0], False)
        await stt_once(whisper_port, bare[0], False)
        await tts_once(coda.port, SENTENCES[0])
        await tts_once(piper_port, SENTENCES[0])

        print("\nSTT: transcript latency after audio-stop (median, audio sent in real time)")
        print(f"  {'':<44} {'coda':>12}  {'faster-whisper':>12}")
        for label, files in (("0.7 s silence tail (Home Assistant)", tail), ("no silence tail (raw clip)", bare)):
            ours = [(await stt_once(coda.port, f, True))[0] for f in files[:rounds]]
            peer = [(await stt_once(whisper_port, f, True))[0] for f in files[:rounds]]
            print(row(label, median_ms(ours), median_ms(peer)))

        print("\nTTS: time to first audio (median)")
        print(f"  {'':<44} {'coda':>12}  {'piper':>12}")
        ours = [(await tts_once(coda.port, t))[0] for t in SENTENCES[:rounds]]
        peer = [(await tts_once(piper_port, t))[0] for t in SENTENCES[:rounds]]
        print(row("one sentence", median_ms(ours), median_ms(peer)))

        print("\nConcurrency: wall time of N clients at once (audio sent as fast as possible)")
        results: dict[str, dict[int, float]] = {}
        jobs = {
            "stt coda": lambda i: stt_once(coda.port, bare[i], False),
            "stt faster-whisper": lambda i: stt_once(whisper_port, bare[i], False),
            "tts coda": lambda i: tts_once(coda.port, SENTENCES[i]),
            "tts piper": lambda i: tts_once(piper_port, SENTENCES[i]),
        }
        for name, job in jobs.items():
            results[name] = {n: await wall(n, job) for n in clients}
        low, high = clients[0], clients[-1]
        print(f"  {'server':<22} " + " ".join(f"{n:>8}" for n in clients) + f"   {high}/{low}")
        for name, walls in results.items():
            print(f"  {name:<22} " + " ".join(f"{walls[n]:7.2f}s" for n in clients)
                  + f"   {walls[high] / walls[low]:4.2f}x")
        print(f"\n  coda / peer wall time at {high} clients:"
              f" stt {results['stt coda'][high] / results['stt faster-whisper'][high]:.2f},"
              f" tts {results['tts coda'][high] / results['tts piper'][high]:.2f}")
        print("\nTargets (tiny models): final transcript <= 50 ms after audio-stop; 8 streams <= 2.5x one.")
        print("Peers: faster-whisper with 2 CPU threads, Piper on onnxruntime; coda with 1 torch thread.")
    finally:
        coda.kill()
        for peer in peers:
            peer.terminate()
            peer.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-venv", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=len(SENTENCES))
    parser.add_argument("--clients", type=_counts, default=[1, 4, 8], help="concurrency levels, e.g. 1,4,8")
    args = parser.parse_args()
    asyncio.run(main_async(args.peers_venv, args.rounds, args.clients))


if __name__ == "__main__":
    sys.exit(main())
