"""What the speaking and listening paths need from a speech engine, whichever profile serves:
Kyutai's batched engines (a GPU) or the CPU profile's Whisper and Pocket TTS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np

from .stt import SttOutput


class SynthesisStream(Protocol):
    """One synthesis: add text, end it, read 80 ms float32 frames at 24 kHz."""

    def add_text(self, text: str) -> None: ...

    def end_text(self) -> None: ...

    def audio(self) -> AsyncIterator[np.ndarray]: ...

    async def close(self) -> None: ...


class Synthesizer(Protocol):
    """A TTS engine."""

    @property
    def sample_rate(self) -> int: ...

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
