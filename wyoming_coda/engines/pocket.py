"""Kyutai's Pocket TTS on a CPU: text in, 80 ms frames of 24 kHz audio out.

A 0.1 B flow model that speaks about three times faster than real time on one core
(docs/hardware.md). Its generation is one request at a time, so each row is one synthesis on
the engine's thread; further requests wait for a row. Text arrives in pieces: it is spoken a
sentence at a time (Pocket TTS conditions on a whole text chunk). Voices are Pocket's own catalog
(with the released weights) or voices cloned from a WAV sample, whose conditioning is computed
once and kept.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..language import split_sentences
from .batching import RowEngine, StepObserver
from .tts import VOICE_CACHE, UnknownVoiceError

FRAME_SIZE = RowEngine.frame_size
SampleLoader = Callable[[Path], np.ndarray]  # a voice sample → float32 mono 24 kHz (or an error)


class PocketStream:
    """One synthesis: add text, end it, read 1920-sample float32 frames."""

    def __init__(self, engine: PocketSpeech, state: Any) -> None:
        self.engine = engine
        self._state = state
        self._text = ""
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._frames: asyncio.Queue[np.ndarray | BaseException | None] = asyncio.Queue()
        self._stop = threading.Event()
        self._task = asyncio.create_task(self._speak(), name="pocket tts stream")
        self._ended = False
        self._closed = False

    def add_text(self, text: str) -> None:
        """Append text; each sentence is spoken once it is complete."""
        done, self._text = split_sentences(self._text + text + " ")
        for sentence in done:
            self._sentences.put_nowait(sentence)

    def end_text(self) -> None:
        """No more text: speak the rest."""
        if self._ended:
            return
        self._ended = True
        if rest := self._text.strip():
            self._sentences.put_nowait(rest)
        self._text = ""
        self._sentences.put_nowait(None)

    async def audio(self) -> AsyncIterator[np.ndarray]:
        """Decoded frames until the end of the text."""
        while (frame := await self._frames.get()) is not None:
            if isinstance(frame, BaseException):
                raise frame
            yield frame

    async def _speak(self) -> None:
        loop = asyncio.get_running_loop()

        def put(item: np.ndarray | BaseException | None) -> None:
            loop.call_soon_threadsafe(self._frames.put_nowait, item)

        try:
            while (sentence := await self._sentences.get()) is not None:
                await loop.run_in_executor(self.engine.executor, self.engine.generate, self._state, sentence,
                                           self._stop, put)
        except Exception as err:  # noqa: BLE001 - the reader gets it, the engine keeps serving
            self._frames.put_nowait(RuntimeError(f"tts synthesis failed: {err}"))
        finally:
            self._frames.put_nowait(None)

    async def close(self) -> None:
        """Stop speaking (also mid-sentence) and give the row back."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._sentences.put_nowait(None)
        if not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.engine.rows.release()


class PocketSpeech(RowEngine):
    """A Pocket TTS model serving `capacity` syntheses at a time, one per thread."""

    def __init__(
        self, model: Any, capacity: int, executor: ThreadPoolExecutor, voices_dir: Path | None,
        load_sample: SampleLoader, on_step: StepObserver | None = None,
    ) -> None:
        super().__init__(model, capacity, executor, on_step)
        self.voices_dir = voices_dir
        self._load_sample = load_sample
        self._states: dict[str, Any] = {}

    def voices(self) -> list[str]:
        """The voices a request may name: the cloned ones (samples in the voices folder), and
        Pocket's catalog when the model has the released weights."""
        from pocket_tts.utils.config import CONFIGS_DIR
        from pocket_tts.utils.utils import _ORIGINS_OF_PREDEFINED_VOICES

        cloned = sorted(p.stem for p in self.voices_dir.glob("*.wav")) if self.voices_dir else []
        origin = getattr(self.model, "origin", None)
        released = isinstance(origin, Path) and origin.is_relative_to(CONFIGS_DIR)
        catalog = sorted(_ORIGINS_OF_PREDEFINED_VOICES) if released and not self.model.has_custom_weights else []
        return cloned + [v for v in catalog if v not in cloned]

    async def check_voice(self, name: str) -> None:
        """Raise UnknownVoiceError (VoiceSampleError for a bad sample) unless `name` can speak."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self._state, name)

    async def open(self, name: str) -> PocketStream:
        """A new synthesis with voice `name` (waits while every row is busy)."""
        state = await asyncio.get_running_loop().run_in_executor(self.executor, self._state, name)
        await self.rows.acquire()
        return PocketStream(self, state)

    @torch.no_grad()
    def _state(self, name: str) -> Any:
        """The conditioning of voice `name`, computed once (model thread)."""
        if name in self._states:
            return self._states[name]
        sample = self.voices_dir / f"{name}.wav" if self.voices_dir is not None else None
        try:
            if sample is not None and sample.is_file():
                audio = torch.from_numpy(self._load_sample(sample))[None, :]
                state = self.model.get_state_for_audio_prompt(audio)
            else:
                state = self.model.get_state_for_audio_prompt(name)
        except UnknownVoiceError:
            raise
        except Exception as err:
            raise UnknownVoiceError(f"unknown voice '{name}'") from err
        self._states[name] = state
        while len(self._states) > VOICE_CACHE:  # the oldest voice state goes first
            del self._states[next(iter(self._states))]
        return state

    @torch.no_grad()
    def generate(self, state: Any, text: str, stop: threading.Event,
                 put: Callable[[np.ndarray], None]) -> None:
        """Speak `text` into `put`, one 80 ms frame at a time (model thread)."""
        rest: np.ndarray = np.zeros(0, dtype=np.float32)
        started = time.perf_counter()
        for chunk in self.model.generate_audio_stream(state, text, stop=stop):
            if stop.is_set():
                return
            rest = np.concatenate([rest, chunk.clamp(-1, 1).numpy().astype(np.float32)])
            while rest.size >= FRAME_SIZE:
                put(rest[:FRAME_SIZE].copy())
                rest = rest[FRAME_SIZE:]
                if self._on_step is not None:
                    now = time.perf_counter()
                    self._on_step("tts", now - started, 1)
                    started = now
        if rest.size and not stop.is_set():
            put(np.pad(rest, (0, FRAME_SIZE - rest.size)))


POCKET_LANGUAGES = {"english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it",
                    "portuguese": "pt", "dutch": "nl"}


def pocket_languages(source: str) -> list[str]:
    """The language of a Pocket TTS model: its config name (`english`, `french_24l`, ...)."""
    name = Path(source).stem.lower()
    return [next((code for lang, code in POCKET_LANGUAGES.items() if name.startswith(lang)), "en")]


def load_pocket_model(source: str, int8: bool = False) -> Any:
    """Pocket TTS `source`: a released model by name (`english`, `french`, ...; its weights come
    from Hugging Face) or a local YAML config; `int8`: its transformer dynamically quantised."""
    from pocket_tts import TTSModel

    threads = torch.get_num_threads()  # importing pocket_tts sets one torch thread for the process
    where: dict[str, Any] = (
        {"config": Path(source).expanduser()} if source.endswith((".yaml", ".yml")) else {"language": source}
    )
    try:
        with warnings.catch_warnings():
            # int8 goes through torch.ao's quantised tensors, which torch deprecates (and says so twice)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
            return TTSModel.load_model(**where, quantize=int8)
    finally:
        torch.set_num_threads(threads)
