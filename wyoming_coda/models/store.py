"""Model store: loads the engines a mode needs (from the engine registry), once per process,
in the background.

Loading starts with the server: the Wyoming and HTTP ports answer at once (describe, ping,
health) while the weights load; a request that needs a model waits for it, and gets a clear
error when it failed to load. `/healthz` reports ready only when every model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..config import VoiceConfig, parse_size, turn_modes
from ..engines.batching import StepObserver
from ..engines.moshi import MoshiEngine
from ..engines.moshi_compat import Q8_WEIGHTS_RATIO, is_q8_checkpoint
from ..engines.protocols import Engine, SentenceScorer, SpeechRecognizer, Synthesizer
from .builtin import builtin_engines
from .checkpoints import resolve_checkpoint
from .registry import EngineRegistry, EngineSpec, LoadRequest, Role

_LOGGER = logging.getLogger(__name__)


def components_for_mode(mode: str, duplex: bool = False) -> list[Role]:
    """Models each mode loads: STT and TTS always (the Wyoming asr/tts services), Moshi when
    the mode can route a turn to speech-to-speech or duplex sessions are enabled."""
    return ["stt", "tts"] if mode == "hybrid" and not duplex else ["stt", "tts", "moshi"]


def moshi_voice(source: str) -> str:
    """A Moshi checkpoint's voice name: `kyutai/moshiko-pytorch-bf16` → `moshiko`."""
    return Path(source.rstrip("/")).name.split("-")[0]


def resolve_device(device: str) -> str:
    """Turn `auto` into `cuda` when a GPU is usable, else `cpu`."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _executor(kind: str, threads: int = 1) -> ThreadPoolExecutor:
    """One thread per engine: its model calls run in order, engines run side by side (the CPU
    profile's engines run one stream per row, a thread each)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"coda-{kind}")


@dataclass
class ModelSlot:
    """One model and where its loading stands."""

    kind: Role
    source: str
    spec: EngineSpec
    state: str = "pending"  # pending | loading | ready | failed
    error: str | None = None
    model: Engine | None = None
    load_seconds: float | None = None
    budget_bytes: int | None = None  # vram_allocation of the component
    weights_bytes: int | None = None  # size of its weight files
    allocated_bytes: int | None = None  # accelerator memory its loading took (CUDA)
    rss_bytes: int | None = None  # process memory its loading took (CPU)

    @property
    def languages(self) -> list[str]:
        """The loaded model's languages when it tells, else those of the source's name."""
        known = self.model.languages if self.model is not None else None
        return known or self.spec.languages(self.source)


class ModelNotReadyError(Exception):
    """A model failed to load (the message says why) or is not part of this mode."""


class VramBudgetError(Exception):
    """A component does not fit its memory budget, or the free accelerator memory."""


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.2f} GiB" if size >= 1 << 28 else f"{size / (1 << 20):.1f} MiB"


def process_rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ModelStore:
    """Owns the models of this process; loads them in a worker thread, in order."""

    def __init__(
        self, config: VoiceConfig, on_step: StepObserver | None = None, engines: EngineRegistry | None = None,
        hints: Callable[[], str | None] | None = None,
    ) -> None:
        """`engines`: the registry to take the profile's engines from (default: the built-in ones);
        `hints`: the words STT should expect now (LoadRequest.hints)."""
        self.config = config
        self.on_step = on_step
        self.hints = hints
        self.device = resolve_device(config.device)
        self.engines = engines or builtin_engines()
        sources = {"stt": config.stt.model, "tts": config.tts.model, "moshi": config.moshi.model_path}
        budgets = {"stt": config.stt.vram_allocation, "tts": config.tts.vram_allocation,
                   "moshi": config.moshi.vram_allocation}
        self.slots: dict[str, ModelSlot] = {
            kind: ModelSlot(kind, sources[kind], self.engines.spec(config.profile, kind),
                            budget_bytes=parse_size(budget) if (budget := budgets[kind]) else None)
            for kind in components_for_mode(config.mode, config.moshi.duplex)
        }
        if "moshi" in self.slots:  # further Moshi voices: slots "moshi/<voice>"
            moshi = self.slots["moshi"]
            for source in config.moshi.voices:
                if (voice := moshi_voice(source)) not in self.moshi_voices():
                    self.slots[f"moshi/{voice}"] = ModelSlot("moshi", source, moshi.spec, budget_bytes=moshi.budget_bytes)
        llm_budget = config.external_llm.vram_allocation
        self.llm_budget_bytes = parse_size(llm_budget) if llm_budget else None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return all(slot.state == "ready" for slot in self.slots.values())

    def start(self) -> None:
        """Begin loading every model in the background."""
        self._task = asyncio.create_task(self._load_all(), name="coda model loading")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for slot in self.slots.values():
            if slot.model is not None:
                await slot.model.close()

    async def stt(self) -> SpeechRecognizer:
        """The STT engine, waiting while it loads."""
        return cast(SpeechRecognizer, await self._ready("stt"))  # the registry serves the role

    async def tts(self) -> Synthesizer:
        """The TTS engine, waiting while it loads."""
        return cast(Synthesizer, await self._ready("tts"))

    async def moshi(self, voice: str | None = None) -> MoshiEngine:
        """The Moshi engine of `voice` (None: the default one), waiting while it loads."""
        voices = self.moshi_voices()
        if voice is None or (voices and voice == voices[0]):
            return cast(MoshiEngine, await self._ready("moshi"))
        if voice not in voices:
            raise ModelNotReadyError(f"no Moshi voice {voice!r} is loaded (voices: {', '.join(voices) or 'none'})")
        return cast(MoshiEngine, await self._ready(f"moshi/{voice}"))

    def languages(self, kind: str) -> list[str]:
        """The languages of the model of `kind`."""
        return self.slots[kind].languages

    def moshi_voices(self) -> list[str]:
        """The Moshi voices of this server, the default first (empty: Moshi is not used)."""
        return [moshi_voice(slot.source) for slot in self.slots.values() if slot.kind == "moshi"]

    async def wait_all(self) -> None:
        """Wait until every model of the mode is loaded (or failed: then raise its error)."""
        for kind in self.slots:
            await self._ready(kind)

    def loaded_tts(self) -> Synthesizer | None:
        """The TTS engine if it is loaded now, else None (never waits)."""
        return cast(Synthesizer | None, self.slots["tts"].model)

    def sentence_scorer(self) -> SentenceScorer | None:
        """The loaded STT engine, when it can read sentences against its recent utterances."""
        engine = self.slots["stt"].model
        return engine if isinstance(engine, SentenceScorer) else None

    def stt_has_end_of_turn(self) -> bool:
        """Whether the loaded STT model has the end-of-turn head (False while it loads; Whisper
        has none)."""
        engine = cast(SpeechRecognizer | None, self.slots["stt"].model)
        return engine is not None and engine.has_end_of_turn

    def occupancy(self) -> dict[str, tuple[int, int, int]]:
        """Per loaded engine: (rows in use, capacity, streams waiting for a row)."""
        return {kind: (slot.model.scheduler.active, slot.model.capacity, slot.model.scheduler.waiting)
                for kind, slot in self.slots.items() if slot.model is not None}

    def saturated(self, kind: str) -> bool:
        """True when every row of the loaded engine `kind` is taken."""
        active, capacity, _ = self.occupancy().get(kind, (0, 1, 0))
        return active >= capacity

    async def _ready(self, kind: str) -> Engine:
        """The loaded model of slot `kind`, waiting while it loads."""
        slot = self.slots.get(kind)
        if slot is None:
            raise ModelNotReadyError(f"the {kind} model is not used in {self.config.mode} mode")
        while slot.state in ("pending", "loading"):
            self._changed.clear()
            await self._changed.wait()
        if slot.state == "failed":
            raise ModelNotReadyError(f"the {kind} model failed to load: {slot.error}")
        assert slot.model is not None
        return slot.model

    def health(self) -> dict[str, Any]:
        """Model states for `/healthz`: ready when every model of the mode is loaded."""
        return {"ready": self.ready, "mode": self.config.mode, "device": self.device,
                # whether a turn can act on devices: every mode but moshi_only without an LLM
                "device_control": self.config.mode != "moshi_only" or self.config.moshi.external_llm_enabled,
                "modes": turn_modes("moshi" in self.slots, self.config.moshi.external_llm_enabled),
                "models": {kind: {"state": slot.state, "source": slot.source, "error": slot.error}
                           for kind, slot in self.slots.items()}}

    def memory_report(self) -> dict[str, Any]:
        """Memory per component (budget, weights, what loading took) and in total: CUDA
        allocator figures on a GPU; on a CPU "cpu" and each component's share of the RSS."""
        components: dict[str, dict[str, Any]] = {
            kind: {"state": slot.state, "budget_bytes": slot.budget_bytes, "weights_bytes": slot.weights_bytes,
                   ("allocated_bytes" if self.device == "cuda" else "rss_bytes"):
                       slot.allocated_bytes if self.device == "cuda" else slot.rss_bytes}
            for kind, slot in self.slots.items()
        }
        components["external_llm"] = {"state": "external", "budget_bytes": self.llm_budget_bytes}
        report: dict[str, Any] = {"device": self.device, "components": components, "rss_bytes": process_rss()}
        if self.device == "cuda":
            import torch

            free, total = torch.cuda.mem_get_info()
            report |= {"allocated_bytes": torch.cuda.memory_allocated(), "reserved_bytes": torch.cuda.memory_reserved(),
                       "free_bytes": free, "total_bytes": total}
            try:  # needs NVML (pynvml) on NVIDIA; absent means unknown
                report["utilization_percent"] = torch.cuda.utilization()
            except Exception:  # noqa: BLE001 - torch raises ModuleNotFoundError or RuntimeError
                report["utilization_percent"] = None
        return report

    def _check_budget(self, slot: ModelSlot, info: Any) -> None:
        """Refuse to load a component whose weights exceed its budget or the free GPU memory."""
        lm_file = Path(info.moshi_weights).stat().st_size
        quantised_on_load = slot.kind == "moshi" and self.config.moshi.quantize and not is_q8_checkpoint(info)
        weights = int(lm_file * (Q8_WEIGHTS_RATIO if quantised_on_load else 1)) + Path(info.mimi_weights).stat().st_size
        slot.weights_bytes = weights
        if slot.budget_bytes is not None and weights > slot.budget_bytes:
            raise VramBudgetError(
                f"the {slot.kind} model needs about {_gib(weights)} for its weights, more than its "
                f"vram_allocation budget of {_gib(slot.budget_bytes)}; raise the budget or pick a smaller model"
            )
        if self.device == "cuda":
            import torch

            free, _ = torch.cuda.mem_get_info()
            if weights > free:
                raise VramBudgetError(
                    f"the {slot.kind} model needs about {_gib(weights)} but only {_gib(free)} of GPU memory is "
                    f"free (budget {_gib(slot.budget_bytes) if slot.budget_bytes else 'none'})"
                )

    def _cap_process_memory(self) -> None:
        """Where torch allows it: cap this process's CUDA allocator at the sum of the budgets."""
        budgets = [slot.budget_bytes for slot in self.slots.values()]
        if self.device != "cuda" or None in budgets:
            return
        import torch

        total = torch.cuda.get_device_properties(0).total_memory
        fraction = min(1.0, sum(b for b in budgets if b) / total)
        torch.cuda.set_per_process_memory_fraction(fraction)
        _LOGGER.info("CUDA allocator capped at %.0f%% of %s (sum of the component budgets)", fraction * 100,
                     _gib(total))

    async def _load_all(self) -> None:
        await asyncio.to_thread(self._cap_process_memory)
        for slot in self.slots.values():
            slot.state = "loading"
            self._changed.set()
            _LOGGER.info("Loading %s model %s on %s", slot.kind, slot.source, self.device)
            start = time.monotonic()
            try:
                slot.model = await asyncio.to_thread(self._load_one, slot)
            except Exception as err:  # noqa: BLE001 - reported, the server keeps serving
                slot.state, slot.error = "failed", str(err)
                _LOGGER.error("Cannot load %s model: %s", slot.kind, err)
            else:
                slot.state, slot.load_seconds = "ready", time.monotonic() - start
                _LOGGER.info("Loaded %s model in %.1f s", slot.kind, slot.load_seconds)
            self._changed.set()

    def _load_one(self, slot: ModelSlot) -> Engine:
        import torch

        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        cuda = self.device == "cuda" and slot.spec.checkpoint
        before = torch.cuda.memory_allocated() if cuda else process_rss()
        info = None
        if slot.spec.checkpoint:
            info = resolve_checkpoint(slot.source, slot.kind)
            self._check_budget(slot, info)
        executor = _executor(slot.kind, slot.spec.threads(self.config))
        request = LoadRequest(slot.source, self.config, self.device, dtype, executor, self.on_step, info, self.hints)
        with torch.no_grad() if slot.spec.checkpoint else contextlib.nullcontext():
            model = slot.spec.load(request)
        if cuda:
            slot.allocated_bytes = torch.cuda.memory_allocated() - before
        else:
            slot.rss_bytes = max(0, process_rss() - before)
        return model
