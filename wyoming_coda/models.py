"""Model store: loads the Kyutai checkpoints a mode needs, once per process, in the background.

Loading starts with the server: the Wyoming and HTTP ports answer at once (describe, ping,
health) while the weights load; a request that needs a model waits for it, and gets a clear
error when it failed to load. `/healthz` reports ready only when every model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .checkpoints import model_languages, resolve_checkpoint
from .config import VoiceConfig

_LOGGER = logging.getLogger(__name__)


def components_for_mode(mode: str) -> list[str]:
    """Models each mode loads: STT and TTS always (the Wyoming asr/tts services), Moshi when
    the mode can route a turn to speech-to-speech."""
    return ["stt", "tts"] if mode == "hybrid" else ["stt", "tts", "moshi"]


def resolve_device(device: str) -> str:
    """Turn `auto` into `cuda` when a GPU is usable, else `cpu`."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class LMStack:
    """A streaming Kyutai LM with its audio codec and text tokenizer (STT and Moshi)."""

    info: Any
    mimi: Any
    lm: Any
    tokenizer: Any


def _load_lm_stack(info: Any, device: str, dtype: Any) -> LMStack:
    return LMStack(
        info=info,
        mimi=info.get_mimi(device=device),
        lm=info.get_moshi(device=device, dtype=dtype),
        tokenizer=info.get_text_tokenizer(),
    )


def _load_tts(info: Any, device: str, dtype: Any, voices: str) -> Any:
    from moshi.models.tts import TTSModel

    return TTSModel.from_checkpoint_info(
        info, n_q=info.lm_config["n_q"], voice_repo=voices, device=device, dtype=dtype
    )


def _executor(kind: str) -> ThreadPoolExecutor:
    """One thread per engine: its model calls run in order, engines run side by side."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"coda-{kind}")


@dataclass
class ModelSlot:
    """One model and where its loading stands."""

    kind: str
    source: str
    state: str = "pending"  # pending | loading | ready | failed
    error: str | None = None
    model: Any = None
    load_seconds: float | None = None

    @property
    def languages(self) -> list[str]:
        return model_languages(self.source)


class ModelNotReadyError(Exception):
    """A model failed to load (the message says why) or is not part of this mode."""


class ModelStore:
    """Owns the models of this process; loads them in a worker thread, in order."""

    def __init__(self, config: VoiceConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        sources = {"stt": config.stt.model, "tts": config.tts.model, "moshi": config.moshi.model_path}
        self.slots = {kind: ModelSlot(kind, sources[kind]) for kind in components_for_mode(config.mode)}
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
            close = getattr(slot.model, "close", None)
            if close is not None:
                await close()

    async def get(self, kind: str) -> Any:
        """The loaded model of `kind`, waiting while it loads."""
        slot = self.slots.get(kind)
        if slot is None:
            raise ModelNotReadyError(f"the {kind} model is not used in {self.config.mode} mode")
        while slot.state in ("pending", "loading"):
            self._changed.clear()
            await self._changed.wait()
        if slot.state == "failed":
            raise ModelNotReadyError(f"the {kind} model failed to load: {slot.error}")
        return slot.model

    def memory_report(self) -> dict[str, Any]:
        """Memory held by the models: CUDA allocator figures on a GPU, process RSS on a CPU."""
        if self.device == "cuda":
            import torch

            return {"device": "cuda", "allocated_bytes": torch.cuda.memory_allocated(),
                    "reserved_bytes": torch.cuda.memory_reserved()}
        with open("/proc/self/statm", encoding="ascii") as statm:
            rss_pages = int(statm.read().split()[1])
        return {"device": "cpu", "rss_bytes": rss_pages * os.sysconf("SC_PAGE_SIZE")}

    def _build(self, kind: str, info: Any, dtype: Any) -> Any:
        """The engine of `kind` over freshly loaded weights."""
        from .engines.stt import SpeechToText
        from .engines.tts import TextToSpeech

        if kind == "stt":
            stack = _load_lm_stack(info, self.device, dtype)
            return SpeechToText(stack, self.config.stt.batch_size, _executor(kind))
        if kind == "tts":
            model = _load_tts(info, self.device, dtype, self.config.tts.voices)
            return TextToSpeech(model, self.config.tts.batch_size, _executor(kind))
        return _load_lm_stack(info, self.device, dtype)

    async def _load_all(self) -> None:
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

    def _load_one(self, slot: ModelSlot) -> Any:
        import torch

        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        info = resolve_checkpoint(slot.source, slot.kind)
        with torch.no_grad():
            return self._build(slot.kind, info, dtype)
