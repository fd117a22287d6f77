"""The speaking pipeline: a stream of text → the TTS engine (one row) → 80 ms frames.

One pipeline for every path that speaks: the Wyoming tts service (whole texts and streamed
ones), the hybrid turn (the LLM's text as it streams) and fallback answers. Text is pushed as it
arrives and handed to the TTS row word by word (`tts.feed: words`, as Kyutai's Unmute does): the
model starts speaking after the first words while the rest is still being written, and its
lookahead waits for the next word rather than ending the sentence. `tts.feed: sentences` hands
over whole sentences instead (the older behaviour, kept to compare). The row is taken once, at
the start, so prosody runs on across sentences.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from ..engines.batching import take_row
from ..engines.protocols import SynthesisStream, Synthesizer
from ..engines.tts import UnknownVoiceError
from ..events import EventBus, SynthesisStarted
from ..language import detect_language, split_sentences

_LOGGER = logging.getLogger(__name__)

OpenTts = Callable[[str], Awaitable[SynthesisStream]]  # gets the text known when the row is taken
FEEDS = ("words", "sentences")


class TtsSource(Protocol):
    """Where the TTS engine comes from (the model store)."""

    async def tts(self) -> Synthesizer: ...

    def loaded_tts(self) -> Synthesizer | None: ...


def split_words(text: str) -> tuple[str, str]:
    """The complete words of `text` (up to its last whitespace) and the unfinished rest."""
    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
    return (text[:cut].strip(), text[cut + 1:]) if cut >= 0 else ("", text)


class SpeakingPipeline:
    """One spoken answer: `push` text as it streams, `end` it, read `frames`.

    `open_tts` None: text only (nothing is spoken). `hold`: keep text back until `release` (or
    `end`); `discard` drops what is held. `wait_for_text`: the row is taken once the first words
    are in (`open_tts` chooses the voice from them)."""

    def __init__(
        self, open_tts: OpenTts | None, feed: str = "words", hold: bool = False, wait_for_text: bool = False
    ) -> None:
        self._open_tts = open_tts
        self._text_in = asyncio.Event()
        if not wait_for_text:
            self._text_in.set()
        self.by_words = feed == "words"
        self.hold = hold
        self._held: list[str] = []
        self._buffer = ""
        self._sentence = ""  # text since the last sentence end (to tell when one completes)
        self.spoken: list[str] = []  # the pieces handed to TTS, in order
        self._tts: SynthesisStream | None = None
        self._waiting: list[str] = []  # pieces spoken before the row was taken
        self._ended = False

    @property
    def speaks(self) -> bool:
        return self._open_tts is not None

    async def start(self) -> None:
        """Take the TTS row now, so the first words are spoken without waiting (a speech whose
        voice comes from its words takes it once they are in)."""
        if self._text_in.is_set():
            await self._open()

    async def _open(self) -> None:
        """Take the row (once); what was spoken before goes in first."""
        if self._open_tts is not None and self._tts is None:
            await self._text_in.wait()
            self._tts = await self._open_tts(" ".join(self._waiting))
            waiting, self._waiting = self._waiting, []
            for piece in waiting:
                self._tts.add_text(piece)
            if self._ended:
                self._tts.end_text()

    def push(self, text: str) -> bool:
        """Add streamed text; True when it completed at least one sentence."""
        sentences, self._sentence = split_sentences(self._sentence + text)
        if self.by_words:
            words, self._buffer = split_words(self._buffer + text)
            if words:
                self._speak(words)
        else:
            self._buffer = self._sentence
            for sentence in sentences:
                self._speak(sentence)
        return bool(sentences)

    def flush(self) -> bool:
        """Speak the unfinished rest now (before a pause such as a tool call); True when it
        held the end of a sentence (text after the last sentence end)."""
        rest, self._buffer = self._buffer.strip(), ""
        unfinished, self._sentence = self._sentence.strip(), ""
        if rest:
            self._speak(rest)
        return bool(unfinished)

    def release(self) -> None:
        """Speak the text held back so far."""
        held, self._held = self._held, []
        for piece in held:
            self._send(piece)

    def discard(self) -> None:
        """Drop the text held back so far (it is never spoken)."""
        self._held.clear()

    def end(self) -> None:
        """No more text: speak the rest and finish."""
        self.flush()
        self.release()
        self._ended = True
        self._text_in.set()
        if self._tts is not None:
            self._tts.end_text()

    def _speak(self, piece: str) -> None:
        if self.hold:
            self._held.append(piece)
        else:
            self._send(piece)

    def _send(self, piece: str) -> None:
        if self._open_tts is None:
            return
        self.spoken.append(piece)
        self._text_in.set()
        if self._tts is None:
            self._waiting.append(piece)
        else:
            self._tts.add_text(piece)

    async def frames(self) -> AsyncGenerator[np.ndarray, None]:
        """Decoded float32 frames at the TTS rate until the end of the text."""
        if self._open_tts is None:
            return
        await self._open()
        assert self._tts is not None
        async for frame in self._tts.audio():
            yield frame

    async def say(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        """All of `text` at once, spoken: its frames, the row given back at the end. Blank text
        takes no row and says nothing."""
        if not text.strip():
            return
        try:
            self.push(text)
            self.end()
            async for frame in self.frames():
                yield frame
        finally:
            await self.close()

    async def close(self) -> None:
        """Give the row back (also when the answer was cancelled)."""
        tts, self._tts = self._tts, None
        if tts is not None:
            await tts.close()


class Speaker:
    """Opens speech with the TTS engine of the model store. A request that names no voice gets
    the voice of its language (`tts.language_voices`; the default voice otherwise): the language
    of its text where the words tell, else that of the latest answer."""

    def __init__(
        self, store: TtsSource, default_voice: str, feed: str = "words",
        language_voices: Mapping[str, str] | None = None, languages: Sequence[str] = ("en",),
        events: EventBus | None = None, row_wait: float = 10.0,
    ) -> None:
        """`row_wait`: seconds to wait for a free TTS row before EngineBusyError."""
        self._store = store
        self.row_wait = row_wait
        self._events = events
        self.default_voice = default_voice
        self.feed = feed
        self.language_voices = dict(language_voices or {})
        self.languages = list(languages)
        self.last_language: str | None = None  # of the latest answer (turns.py sets it)
        self._listed: list[str] | None = None

    def voices(self) -> list[str]:
        """The voices a request may name: the configured one until the TTS model is loaded,
        then the engine's too (listed once)."""
        engine = self._store.loaded_tts()
        if engine is None:
            return [self.default_voice]
        if self._listed is None:
            self._listed = sorted(set(engine.voices()) | {self.default_voice})
        return self._listed

    async def check_voice(self, voice: str | None) -> str:
        """The voice to use (the default for None); raises UnknownVoiceError. A name is only
        ever looked up among the listed voices: it is never a path or an address."""
        name = voice or self.default_voice
        engine = await self._store.tts()
        if name not in self.voices():
            raise UnknownVoiceError(f"unknown voice {name!r}")
        await engine.check_voice(name)
        return name

    def voice_for(self, language: str | None) -> str:
        """The voice of answers in `language`."""
        return self.language_voices.get(language or "", self.default_voice)

    def language_of(self, text: str) -> str | None:
        """The language `text` is in (among the TTS model's), else the latest answer's."""
        return detect_language(text, self.languages) or self.last_language

    async def open_stream(self, voice: str | None = None, language: str | None = None) -> SynthesisStream:
        """A raw TTS stream: add text, end it, read 80 ms frames. `language`: the text's, when it
        chose the voice (reported in the `synthesis` event)."""
        name = voice or self.default_voice
        stream = await take_row((await self._store.tts()).open(name), self.row_wait, "text-to-speech")
        if self._events is not None:
            self._events.publish(SynthesisStarted(name, language))
        return stream

    async def _open_for(self, text: str) -> SynthesisStream:
        """A stream with the voice of `text`'s language (the default one if that voice is missing)."""
        language = self.language_of(text)
        voice = self.voice_for(language)
        try:
            return await self.open_stream(voice, language)
        except UnknownVoiceError:
            _LOGGER.warning("Voice %s (tts.language_voices) is not in the voice repository", voice)
            return await self.open_stream(self.default_voice, language)

    def speech(self, voice: str | None = None) -> SpeakingPipeline:
        """A speaking pipeline with `voice`; None: the voice of the language of its first words."""
        if voice is None:
            return SpeakingPipeline(self._open_for, self.feed, wait_for_text=True)
        return SpeakingPipeline(lambda _text: self.open_stream(voice), self.feed)
