"""Moshi full duplex: 80 ms of user audio in, 80 ms of Moshi's audio and its inner-monologue
text out, for many sessions batched on one model (as Kyutai's server loop, minus the lock
that serves one conversation at a time).

Text can be written into a session's inner monologue (`MoshiSession.say`): Moshi's audio
follows its text stream, so the words are spoken in Moshi's voice. A forced token replaces the
next word token Moshi samples (keeping its own timing between words); after a few steps of
padding in a row, the next token is forced anyway, so the words always come out. The sampled
token is replaced before the depth transformer and the cache see it, as if Moshi had thought it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import Framer
from .batching import BatchedStream, StepObserver
from .lm import AudioLMEngine, LMStack

FORCE_AFTER_PADDING = 3  # steps of padding after which the next written token is forced


@dataclass
class MoshiOutput:
    """One 80 ms step of a session: Moshi's audio (None during the model's first steps), the
    text piece it thought at that step ("" when none), and whether that text was written in
    (`MoshiSession.say`) rather than Moshi's own."""

    pcm: np.ndarray | None
    text: str
    written: bool = False
    retrieval: bool = False  # a MoshiRAG checkpoint sampled its retrieval trigger at this step


@dataclass
class MoshiWork:
    """A session's input for one step: its frame, text tokens to write, a stop, and whether
    Moshi holds the floor (thinks only padding: it says nothing of its own)."""

    frame: np.ndarray
    tokens: list[int]
    stop_writing: bool
    hold: bool


@dataclass
class _Writing:
    """The tokens still to write into one row, and which of its recent steps were written
    (the model's output lags its sampling by the acoustic delay); owned by the model thread."""

    tokens: deque[int]
    recent: deque[bool]
    padding_run: int = 0
    hold: bool = False


class MoshiSession(BatchedStream[MoshiOutput]):
    """One duplex conversation: feed the user's audio, read Moshi's frames as they come."""

    def __init__(self, engine: MoshiEngine) -> None:
        super().__init__(engine.scheduler)
        self.engine = engine
        self._framer = Framer(engine.frame_size)
        self._frames: deque[np.ndarray] = deque()
        self._tokens: list[int] = []
        self._stop_writing = False
        self._hold = False
        self.frames_in = 0
        self.writing = False  # written text is still being spoken (as of the last step)

    def say(self, text: str) -> None:
        """Write `text` into Moshi's inner monologue, after what is still to be said."""
        self._tokens.extend(self.engine.text_tokens(text))
        self.writing = self.writing or bool(self._tokens)

    def stop_saying(self) -> None:
        """Drop the written text not yet spoken (the user interrupted)."""
        self._tokens.clear()
        self._stop_writing = True

    def hold_floor(self, hold: bool) -> None:
        """While held, Moshi's own words are replaced by padding: it keeps the floor without
        inventing an answer (written text still comes out)."""
        self._hold = hold

    def feed(self, samples: np.ndarray) -> None:
        """Append float32 mono samples at 24 kHz (any length; whole frames are stepped)."""
        self._frames.extend(self._framer.push(samples))
        self.engine.scheduler.wake()

    @property
    def pending(self) -> int:
        """User frames fed but not stepped yet."""
        return len(self._frames)

    def has_work(self) -> bool:
        return bool(self._frames)

    def take(self) -> MoshiWork:
        work = MoshiWork(self._frames.popleft(), self._tokens, self._stop_writing, self._hold)
        self._tokens, self._stop_writing = [], False
        return work

    def deliver(self, output: tuple[MoshiOutput, bool]) -> None:
        result, writing = output
        self.frames_in += 1
        self.writing = writing or bool(self._tokens)
        self._emit(result)

    def outputs(self) -> AsyncIterator[MoshiOutput]:
        """Moshi's steps, one per user frame, until the session is closed."""
        return self._items()

    async def close(self) -> None:
        self._frames.clear()
        self._end()
        await super().close()


class MoshiEngine(AudioLMEngine):
    """A Moshi model shared by up to `capacity` concurrent sessions."""

    def __init__(
        self, stack: LMStack, capacity: int, executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None, retrieval_token: int | None = None,
    ) -> None:
        """`retrieval_token`: a MoshiRAG checkpoint's trigger (outputs flag it as `retrieval`)."""
        super().__init__("moshi", stack, capacity, self._step, executor, on_step, on_text_hook=self._on_text)
        self.retrieval_token = retrieval_token
        self._writing: list[_Writing | None] = [None] * capacity  # model thread only
        self._stepping: list[bool] = [False] * capacity

    def text_tokens(self, text: str) -> list[int]:
        """Moshi's text tokens for `text` (its own tokenizer)."""
        return [int(t) for t in self.stack.tokenizer.encode(text)]

    def _on_text(self, tokens: torch.Tensor) -> None:
        """Replace the sampled text token of rows that have words to write (model thread)."""
        pad = self.stack.lm.existing_text_padding_id
        sampled = tokens.tolist()
        for row, writing in enumerate(self._writing):
            if writing is None or not self._stepping[row]:
                continue
            written = False
            if writing.tokens and (sampled[row] != pad or writing.padding_run >= FORCE_AFTER_PADDING):
                tokens[row] = writing.tokens.popleft()
                writing.padding_run, written = 0, True
            elif writing.tokens:
                writing.padding_run += 1
            if writing.hold and not written:
                tokens[row] = pad
            writing.recent.append(written)

    async def open(self) -> MoshiSession:
        """A new session with its own row (waits while every row is busy)."""
        session = MoshiSession(self)
        await self._open(session)
        return session

    @torch.no_grad()
    def _step(
        self, inputs: Sequence[MoshiWork | None], resets: Sequence[bool]
    ) -> list[tuple[MoshiOutput, bool] | None]:
        mimi = self.stack.mimi
        for row, work in enumerate(inputs):
            self._stepping[row] = work is not None
            if work is None:
                continue
            if resets[row] or self._writing[row] is None:
                self._writing[row] = _Writing(deque(), deque(maxlen=self._lm_gen.max_delay + 1))
            writing = self._writing[row]
            assert writing is not None
            if work.stop_writing:
                writing.tokens.clear()
            writing.tokens.extend(work.tokens)
            writing.hold = work.hold
        frames = [work.frame if work is not None else None for work in inputs]
        tokens = self._lm_gen.step(self._encode(frames, resets))
        assert tokens is not None  # out-of-sync support: every step returns tokens (-1 where not yet valid)
        active = torch.tensor([x is not None for x in frames], device=self.device)
        audio = tokens[:, 1:]
        valid = (audio >= 0).all(dim=1)[:, 0] & active
        out_pcm = None
        if bool(valid.any()):
            mimi.set_exec_mask(valid)
            decoded = mimi.decode(torch.where(valid[:, None, None], audio, 0)).clamp(-1, 1)
            out_pcm = decoded[:, 0].float().cpu().numpy()
        text_ids = tokens[:, 0, 0].tolist()
        results: list[tuple[MoshiOutput, bool] | None] = []
        for row, frame in enumerate(frames):
            writing = self._writing[row]
            if frame is None or writing is None:
                results.append(None)
                continue
            # the text out now was sampled max_delay steps ago: the oldest of the recent flags
            written = len(writing.recent) == writing.recent.maxlen and writing.recent[0]
            pcm = out_pcm[row].copy() if out_pcm is not None and bool(valid[row]) else None
            trigger = not written and self.retrieval_token is not None and text_ids[row] == self.retrieval_token
            results.append((MoshiOutput(pcm, self._piece(text_ids[row]), written, trigger),
                            bool(writing.tokens) or any(writing.recent)))
        return results
