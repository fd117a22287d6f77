"""What the rest of the server needs from a speech engine, one protocol per role, whichever
engine serves it: Kyutai's batched engines (a GPU) or the CPU profile's Whisper and Pocket TTS.
An engine describes itself here (rows, languages, voices, end-of-turn ability), so nothing
outside the engine registry asks which class it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from .stt import SttOutput


class Occupancy(Protocol):
    """How many rows are in use and how many streams wait for one."""

    @property
    def active(self) -> int: ...

    @property
    def waiting(self) -> int: ...


class Engine(Protocol):
    """What the model store needs of every engine."""

    @property
    def capacity(self) -> int: ...

    @property
    def scheduler(self) -> Occupancy: ...

    @property
    def languages(self) -> list[str] | None:
        """The languages it serves, when the loaded model tells (None: its source's name does)."""

    async def close(self) -> None: ...


class SynthesisStream(Protocol):
    """One synthesis: add text, end it, read 80 ms float32 frames at 24 kHz."""

    def add_text(self, text: str) -> None: ...

    def end_text(self) -> None: ...

    def audio(self) -> AsyncIterator[np.ndarray]: ...

    async def close(self) -> None: ...


class Synthesizer(Engine, Protocol):
    """A TTS engine."""

    @property
    def sample_rate(self) -> int: ...

    def voices(self) -> list[str]:
        """The voices a request may name."""

    async def check_voice(self, name: str) -> None: ...

    async def open(self, name: str) -> SynthesisStream: ...


class Recognizer(Protocol):
    """An STT engine's frame geometry and end-of-turn ability."""

    @property
    def frame_rate(self) -> float: ...

    @property
    def has_end_of_turn(self) -> bool: ...

    @property
    def delay_seconds(self) -> float: ...


class RecognitionStream(Protocol):
    """One utterance: feed 24 kHz float32 audio, finish, read text outputs."""

    @property
    def engine(self) -> Recognizer: ...

    @property
    def frames_in(self) -> int: ...

    def feed(self, samples: np.ndarray) -> None: ...

    def prepare(self) -> None:
        """The VAD hears the user stop: an engine that transcribes at the end may start now."""

    def finish(self, trailing_silence: float = 0.0) -> None: ...

    def outputs(self) -> AsyncIterator[SttOutput]: ...

    async def close(self) -> None: ...


class SpeechRecognizer(Engine, Recognizer, Protocol):
    """An STT engine."""

    @property
    def sample_rate(self) -> int: ...

    async def open(self) -> RecognitionStream: ...


class TextScore(NamedTuple):
    """How likely a text is for an utterance's audio: its log-probability, over its tokens."""

    logprob: float
    tokens: int


@runtime_checkable
class SentenceScorer(Protocol):
    """An STT engine that keeps its recent utterances' audio and can read other sentences
    against it (Whisper, engines/whisper.py)."""

    async def score_sentences(self, heard: str, sentences: list[str], language: str) -> list[TextScore] | None:
        """For the recent utterance transcribed as `heard`: the score of `heard`, then of each
        sentence; None when no such utterance is kept."""
