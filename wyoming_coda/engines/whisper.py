"""Whisper (faster-whisper, CTranslate2 int8) on a CPU: a command's audio in, its text out.

Kyutai's STT is not real time on a CPU (docs/hardware.md); Whisper transcribes a whole command
in a fraction of its length, so the CPU profile buffers the command and transcribes it when it
ends: the server's end of turn (Silero VAD) or the client's audio-stop. The transcription starts
as soon as the VAD hears the user stop (`prepare`), so it runs during the end-of-turn silence
rather than after it. Each row is one transcription on the engine's thread; further commands
wait for a row.

The engine keeps the audio of its last few utterances for a short while (`RecentUtterances`), so
a client whose grammar the transcript failed can ask how likely its own sentences are for that
audio (`score_sentences`): Whisper reads each sentence against the audio (teacher forcing) and
gives its log-probability and its length in tokens, beside the transcript's own.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import soxr

from ..audio import SAMPLE_RATE
from .batching import RowEngine, StepObserver
from .protocols import TextScore
from .stt import SttOutput

WHISPER_RATE = 16000
WHISPER_LANGUAGES = ["en", "fr", "de", "es", "it", "nl", "pt"]  # of its ~100, those it transcribes best
RECENT_UTTERANCES = 8  # utterances whose audio is kept for scoring sentences against
RECENT_SECONDS = 120.0  # and for how long
WINDOW_SECONDS = 30  # Whisper's window: the audio a score reads
WHISPER_FRAMES = 3000  # mel frames of that window


def heard_key(text: str) -> str:
    """A transcript as a client passes it on: case, spacing and punctuation aside."""
    return " ".join(re.findall(r"[\w'%]+", text.lower()))


class RecentUtterances:
    """The 24 kHz audio of the last `RECENT_UTTERANCES` transcriptions, by transcript, for
    `RECENT_SECONDS` (kept in memory only; resampled only when read)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()

    def add(self, text: str, samples: np.ndarray) -> None:
        key = heard_key(text)
        self._items.pop(key, None)
        self._items[key] = (time.monotonic(), samples[:SAMPLE_RATE * WINDOW_SECONDS])
        while len(self._items) > RECENT_UTTERANCES:
            self._items.popitem(last=False)

    def get(self, text: str) -> np.ndarray | None:
        now = time.monotonic()
        for key in [k for k, (at, _) in self._items.items() if now - at > RECENT_SECONDS]:
            del self._items[key]
        item = self._items.get(heard_key(text))
        return None if item is None else item[1]


class WhisperStream:
    """One command: feed audio, finish, read its text. `prepare` starts transcribing what was
    fed so far while the end-of-turn silence runs; `finish` takes that result when only silence
    came after it."""

    def __init__(self, engine: WhisperSpeechToText) -> None:
        self.engine = engine
        self._chunks: list[np.ndarray] = []
        self._results: asyncio.Queue[SttOutput | BaseException | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._prepared: tuple[int, asyncio.Task[str]] | None = None  # (samples it covers, its transcription)
        self.samples_fed = 0

    @property
    def frames_in(self) -> int:
        return self.samples_fed // self.engine.frame_size

    def feed(self, samples: np.ndarray) -> None:
        """Append float32 mono samples at 24 kHz."""
        if self._task is not None:
            raise RuntimeError("stream already finished")
        self._chunks.append(samples.astype(np.float32, copy=False))
        self.samples_fed += samples.size

    def prepare(self) -> None:
        """The user seems to have stopped: transcribe what was said so far, in the background."""
        if self._task is not None or not self.samples_fed:
            return
        self._drop_prepared()
        task = asyncio.create_task(self._run(np.concatenate(self._chunks)), name="whisper prepared transcription")
        self._prepared = (self.samples_fed, task)

    def finish(self, trailing_silence: float = 0.0) -> None:
        """End of audio, `trailing_silence` seconds of it without speech: transcribe it."""
        if self._task is None:
            self._task = asyncio.create_task(self._transcribe(trailing_silence), name="whisper transcription")

    def _drop_prepared(self) -> None:
        if self._prepared is not None:
            self._prepared[1].cancel()
            self._prepared = None

    async def _run(self, audio: np.ndarray) -> str:
        return str(await self.engine.in_row(self.engine.transcribe, audio))

    async def _transcribe(self, trailing_silence: float) -> None:
        try:
            if self.samples_fed:
                prepared, self._prepared = self._prepared, None
                audio, self._chunks = np.concatenate(self._chunks), []
                silent = trailing_silence * self.engine.sample_rate + self.engine.frame_size
                if prepared is not None and self.samples_fed - prepared[0] <= silent:
                    text = await prepared[1]  # nothing but silence since: usually done already
                else:
                    if prepared is not None:
                        prepared[1].cancel()
                    text = await self._run(audio)
                if text:
                    self.engine.recent.add(text, audio)
                    self._results.put_nowait(SttOutput(text, None))
        except Exception as err:  # noqa: BLE001 - the reader gets it, the engine keeps serving
            self._results.put_nowait(RuntimeError(f"stt transcription failed: {err}"))
        finally:
            self._results.put_nowait(None)

    async def outputs(self) -> AsyncIterator[SttOutput]:
        """The command's text (one output) once `finish` has transcribed it."""
        while (item := await self._results.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        self._chunks = []
        self._drop_prepared()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class WhisperSpeechToText(RowEngine):
    """A faster-whisper model shared by up to `capacity` transcriptions at a time (streams are
    fed 24 kHz audio by the server's front end, resampled here)."""

    has_end_of_turn = False
    delay_seconds = 0.0

    def __init__(
        self, model: Any, capacity: int, executor: ThreadPoolExecutor, on_step: StepObserver | None = None,
        hints: Callable[[], str | None] | None = None,
    ) -> None:
        """`hints`: the words to expect now (the home's devices and areas, listen/vocabulary.py),
        given to Whisper as its initial prompt."""
        super().__init__(model, capacity, executor, on_step)
        self._hints = hints
        self.languages: list[str] = WHISPER_LANGUAGES if model.model.is_multilingual else ["en"]
        self.language = None if model.model.is_multilingual else "en"  # multilingual: Whisper tells
        self._on_step = on_step
        self.recent = RecentUtterances()

    async def open(self) -> WhisperStream:
        return WhisperStream(self)

    async def in_row(self, work: Callable[..., Any], *args: Any) -> Any:
        """`work(*args)` on the model's thread, in a row of its own."""
        await self.rows.acquire()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)
        finally:
            self.rows.release()

    def resampled(self, audio: np.ndarray) -> np.ndarray:
        """24 kHz float32 audio at Whisper's 16 kHz."""
        return np.asarray(soxr.resample(audio, self.sample_rate, WHISPER_RATE), dtype=np.float32)

    def transcribe(self, audio: np.ndarray) -> str:
        """The text of 24 kHz float32 audio (model thread)."""
        started = time.perf_counter()
        samples = self.resampled(audio)
        segments, _ = self.model.transcribe(
            samples, language=self.language, beam_size=1, vad_filter=False, without_timestamps=True,
            condition_on_previous_text=False, initial_prompt=self._hints() if self._hints else None)
        text = " ".join(segment.text.strip() for segment in segments).strip()
        if self._on_step is not None:
            self._on_step("stt", time.perf_counter() - started, 1)
        return text

    async def score_sentences(self, heard: str, sentences: list[str], language: str) -> list[TextScore] | None:
        """For the recent utterance transcribed as `heard`: the score of `heard` and then of each
        sentence (None when no such utterance is kept)."""
        if (audio := self.recent.get(heard)) is None:
            return None
        language = language if language in self.languages else self.languages[0]
        return list(await self.in_row(self._scores, audio, [heard, *sentences], language))

    def _scores(self, audio: np.ndarray, texts: list[str], language: str) -> list[TextScore]:
        """Each text read against the audio (model thread): one encoding, one teacher-forced pass."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        started = time.perf_counter()
        whisper = self.model.model
        tokenizer = Tokenizer(self.model.hf_tokenizer, whisper.is_multilingual, task="transcribe", language=language)
        features = self.model.feature_extractor(self.resampled(audio))[:, :WHISPER_FRAMES]
        frames = features.shape[1]
        features = np.pad(features, ((0, 0), (0, WHISPER_FRAMES - frames)))[None].astype(np.float32)
        encoded = np.asarray(whisper.encode(ctranslate2.StorageView.from_array(features)))
        tokens = [tokenizer.encode(" " + text.strip()) or [tokenizer.eot] for text in texts]
        batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.repeat(encoded, len(texts), axis=0)))
        results = whisper.align(batch, [*tokenizer.sot_sequence, tokenizer.no_timestamps], tokens,
                                [frames] * len(texts))
        if self._on_step is not None:
            self._on_step("stt", time.perf_counter() - started, 1)
        return [TextScore(float(np.sum(np.log(np.maximum(r.text_token_probs, 1e-9)))), len(r.text_token_probs))
                for r in results]



def whisper_languages(source: str) -> list[str]:
    """Before loading, from the name: English for the `.en` models, else the languages Whisper
    handles best (the loaded engine knows for sure: `languages`)."""
    return ["en"] if source.rstrip("/").endswith(".en") else WHISPER_LANGUAGES


def load_whisper_model(source: str, threads: int) -> Any:
    """faster-whisper `source`: a model name (`tiny.en`, `base`, ...; downloaded from Hugging
    Face) or a local CTranslate2 model directory, int8 on the CPU."""
    from faster_whisper import WhisperModel

    return WhisperModel(source, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1)
