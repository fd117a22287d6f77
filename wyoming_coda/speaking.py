"""The speaking pipeline: a stream of text → sentences → Kyutai TTS rows → 80 ms frames.

One pipeline for every path that speaks: the Wyoming tts service, the hybrid turn (the LLM's
text as it streams) and fallback answers. Text is pushed as it arrives and cut into sentences;
each sentence goes to TTS at once, so audio starts after the first sentence while the rest is
still being written.

Two ways to use rows: one row for the whole answer (sentences appended to one TTS stream, so
prosody runs on and the row is taken once, at the start), or one row per sentence with markers
around each sentence's audio (the Wyoming streaming synthesis, one audio block per sentence).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .engines.tts import TextToSpeech, TtsStream

OpenTts = Callable[[], Awaitable[TtsStream]]


class TtsSource(Protocol):
    """Where the TTS engine comes from (the model store)."""

    async def tts(self) -> TextToSpeech: ...


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n+")


def split_sentences(text: str) -> tuple[list[str], str]:
    """Complete sentences in `text` and the unfinished rest."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        sentence = text[start:match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    return sentences, text[start:]


@dataclass
class SentenceStart:
    """Per-sentence mode: the audio of `text` follows."""

    text: str


@dataclass
class SentenceEnd:
    """Per-sentence mode: the audio of the sentence before is complete."""


SpeechItem = np.ndarray | SentenceStart | SentenceEnd


class Speech:
    """One spoken answer: `push` text as it streams, `end` it, read `frames`.

    `open_tts` None: text only (nothing is spoken). `hold`: keep sentences back until `release`
    (or `end`); `discard` drops what is held."""

    def __init__(self, open_tts: OpenTts | None, per_sentence: bool = False, hold: bool = False) -> None:
        self._open_tts = open_tts
        self.per_sentence = per_sentence
        self.hold = hold
        self._held: list[str] = []
        self._buffer = ""
        self.spoken: list[str] = []  # the sentences handed to TTS, in order
        self._tts: TtsStream | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()  # per-sentence mode

    @property
    def speaks(self) -> bool:
        return self._open_tts is not None

    async def start(self) -> None:
        """Take the TTS row now (one-row mode), so the first sentence is spoken without waiting."""
        if self._open_tts is not None and not self.per_sentence and self._tts is None:
            self._tts = await self._open_tts()

    def push(self, text: str) -> bool:
        """Add streamed text; True when it completed at least one sentence."""
        sentences, self._buffer = split_sentences(self._buffer + text)
        for sentence in sentences:
            self._speak(sentence)
        return bool(sentences)

    def flush(self) -> bool:
        """Speak the unfinished rest now (before a pause such as a tool call); True when there
        was a rest to speak."""
        rest, self._buffer = self._buffer.strip(), ""
        if rest:
            self._speak(rest)
        return bool(rest)

    def release(self) -> None:
        """Speak the sentences held back so far."""
        held, self._held = self._held, []
        for sentence in held:
            self._send(sentence)

    def discard(self) -> None:
        """Drop the sentences held back so far (they are never spoken)."""
        self._held.clear()

    def end(self) -> None:
        """No more text: speak the rest and finish."""
        self.flush()
        self.release()
        if self._tts is not None:
            self._tts.end_text()
        self._queue.put_nowait(None)

    def _speak(self, sentence: str) -> None:
        if self.hold:
            self._held.append(sentence)
        else:
            self._send(sentence)

    def _send(self, sentence: str) -> None:
        if self._open_tts is None:
            return
        self.spoken.append(sentence)
        if self.per_sentence:
            self._queue.put_nowait(sentence)
        else:
            assert self._tts is not None, "start() takes the row before text is pushed"
            self._tts.add_text(sentence)

    async def frames(self) -> AsyncIterator[SpeechItem]:
        """Decoded float32 frames at the TTS rate (with sentence markers in per-sentence mode)
        until the end of the text."""
        if self._open_tts is None:
            return
        if not self.per_sentence:
            await self.start()
            assert self._tts is not None
            async for frame in self._tts.audio():
                yield frame
            return
        while (sentence := await self._queue.get()) is not None:
            yield SentenceStart(sentence)
            self._tts = await self._open_tts()
            try:
                self._tts.add_text(sentence)
                self._tts.end_text()
                async for frame in self._tts.audio():
                    yield frame
            finally:
                await self.close()
            yield SentenceEnd()

    async def say(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        """All of `text` at once, spoken (one row): its frames, the row given back at the end.
        Blank text takes no row and says nothing."""
        if not text.strip():
            return
        try:
            await self.start()
            self.push(text)
            self.end()
            async for item in self.frames():
                if isinstance(item, np.ndarray):
                    yield item
        finally:
            await self.close()

    async def close(self) -> None:
        """Give the row back (also when the answer was cancelled)."""
        tts, self._tts = self._tts, None
        if tts is not None:
            await tts.close()


class Speaker:
    """Opens speech with the TTS engine of the model store, with the default voice."""

    def __init__(self, store: TtsSource, default_voice: str) -> None:
        self._store = store
        self.default_voice = default_voice

    async def check_voice(self, voice: str | None) -> str:
        """The voice to use (the default for None); raises UnknownVoiceError."""
        name = voice or self.default_voice
        await (await self._store.tts()).check_voice(name)
        return name

    async def open_stream(self, voice: str | None = None) -> TtsStream:
        """A raw TTS stream: add text, end it, read 80 ms frames."""
        return await (await self._store.tts()).open(voice or self.default_voice)

    def speech(self, voice: str | None = None, per_sentence: bool = False) -> Speech:
        """A speaking pipeline with `voice`."""
        return Speech(lambda: self.open_stream(voice), per_sentence)
