"""Moshi answering pipeline turns (Home Assistant's Assist, any `handle` client).

An Assist pipeline is text in the middle: STT → agent → TTS. To let Moshi answer, the server
keeps the user's audio of each recognised utterance for a short while (keyed by its
transcript, stored by the asr service); when the agent's turn for that transcript is routed to
Moshi, Moshi hears that audio and answers; its words are the turn's answer, and its audio is
kept (keyed by the answer) so that when the pipeline asks `coda-tts` to speak exactly that
answer, the satellite hears Moshi's own voice. Typed text has no audio: Moshi then hears the
text spoken by Kyutai TTS.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..engines.batching import take_row
from ..engines.moshi import MoshiEngine
from ..speak.pipeline import Speaker

KEPT_SECONDS = 120.0  # how long an utterance's audio or an answer's audio is kept
KEPT_ITEMS = 32
REPLY_QUIET_STEPS = 12  # ~1 s without a word after Moshi spoke: its answer is over
NO_REPLY_STEPS = 50  # 4 s without a word: Moshi has nothing to say


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


class RecentAudio:
    """Audio kept for a short while under a text (an utterance's transcript, an answer)."""

    def __init__(self, seconds: float = KEPT_SECONDS, size: int = KEPT_ITEMS) -> None:
        self.seconds, self.size = seconds, size
        self._items: OrderedDict[str, tuple[float, list[np.ndarray]]] = OrderedDict()

    def put(self, text: str, frames: list[np.ndarray]) -> None:
        self._expire()
        self._items[_key(text)] = (time.monotonic(), frames)
        self._items.move_to_end(_key(text))
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, text: str) -> list[np.ndarray] | None:
        self._expire()
        item = self._items.get(_key(text))
        return item[1] if item is not None else None

    def take(self, text: str) -> list[np.ndarray] | None:
        """The audio under `text`, no longer kept."""
        frames = self.get(text)
        self._items.pop(_key(text), None)
        return frames

    def may_become(self, text: str) -> bool:
        """Whether some kept text starts with `text` (a streamed text still arriving)."""
        self._expire()
        start = _key(text)
        return any(key.startswith(start) for key in self._items)

    def _expire(self) -> None:
        limit = time.monotonic() - self.seconds
        for key in [k for k, (at, _) in self._items.items() if at < limit]:
            del self._items[key]


@dataclass
class MoshiReply:
    """What Moshi answered: its words and its audio (24 kHz float32 frames)."""

    text: str
    frames: list[np.ndarray]


class MoshiSource(Protocol):
    """Where the Moshi engine comes from (the model store)."""

    async def moshi(self) -> MoshiEngine: ...


class MoshiTurns:
    """Moshi's side of pipeline turns: the utterances heard, Moshi's replies, its answers' audio."""

    def __init__(self, store: MoshiSource, speaker: Speaker, reply_max_seconds: float, row_wait: float = 10.0) -> None:
        self.store = store
        self.row_wait = row_wait
        self.speaker = speaker
        self.reply_max_seconds = reply_max_seconds
        self.heard = RecentAudio()  # the user's utterances, by transcript
        self.answers = RecentAudio()  # Moshi's answers, by their words

    async def hear_text(self, text: str) -> list[np.ndarray]:
        """Typed text as Moshi would hear it: spoken by Kyutai TTS."""
        return [frame async for frame in self.speaker.speech().say(text)]

    async def reply(self, audio: Sequence[np.ndarray]) -> MoshiReply:
        """Moshi hears `audio` (as fast as it can step), then listens to silence until it has
        answered (a second without a word after it spoke), found nothing to say, or spoken for
        `reply_max_seconds`."""
        engine = await self.store.moshi()
        session = await take_row(engine.open(), self.row_wait, "Moshi")
        outputs = session.outputs()
        words: list[str] = []
        frames: list[np.ndarray] = []
        try:
            for chunk in audio:
                session.feed(chunk)
            for _ in range(sum(len(c) for c in audio) // engine.frame_size):
                await anext(outputs)  # Moshi's steps while the user speaks are not the answer
            silence = np.zeros(engine.frame_size, dtype=np.float32)
            quiet = 0
            for step in range(int(self.reply_max_seconds * engine.frame_rate)):
                session.feed(silence)
                output = await anext(outputs)
                if output.text.strip():
                    words.append(output.text)
                    quiet = 0
                else:
                    quiet += 1
                if words and output.pcm is not None:  # the answer's audio, from its first word
                    frames.append(output.pcm)
                if (words and quiet >= REPLY_QUIET_STEPS) or (not words and step >= NO_REPLY_STEPS):
                    break
        finally:
            await session.close()
        text = "".join(words).strip()
        if text:
            self.answers.put(text, frames)
        return MoshiReply(text, frames)
