"""Moshi full duplex: 80 ms of user audio in, 80 ms of Moshi's audio and its inner-monologue
text out, for many sessions batched on one model (as Kyutai's server loop, minus the lock
that serves one conversation at a time)."""

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


@dataclass
class MoshiOutput:
    """One 80 ms step of a session: Moshi's audio (None during the model's first steps) and the
    text piece it thought at that step ("" when none)."""

    pcm: np.ndarray | None
    text: str


class MoshiSession(BatchedStream[MoshiOutput]):
    """One duplex conversation: feed the user's audio, read Moshi's frames as they come."""

    def __init__(self, engine: MoshiEngine) -> None:
        super().__init__(engine.scheduler)
        self.engine = engine
        self._framer = Framer(engine.frame_size)
        self._frames: deque[np.ndarray] = deque()
        self.frames_in = 0

    def feed(self, samples: np.ndarray) -> None:
        """Append float32 mono samples at 24 kHz (any length; whole frames are stepped)."""
        self._frames.extend(self._framer.push(samples))
        self.engine.scheduler.wake()

    def has_work(self) -> bool:
        return bool(self._frames)

    def take(self) -> np.ndarray:
        return self._frames.popleft()

    def deliver(self, output: MoshiOutput) -> None:
        self.frames_in += 1
        self._emit(output)

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
        on_step: StepObserver | None = None,
    ) -> None:
        super().__init__("moshi", stack, capacity, self._step, executor, on_step)

    async def open(self) -> MoshiSession:
        """A new session with its own row (waits while every row is busy)."""
        session = MoshiSession(self)
        await self._open(session)
        return session

    @torch.no_grad()
    def _step(self, inputs: Sequence[np.ndarray | None], resets: Sequence[bool]) -> list[MoshiOutput | None]:
        mimi = self.stack.mimi
        tokens = self._lm_gen.step(self._encode(inputs, resets))
        assert tokens is not None  # out-of-sync support: every step returns tokens (-1 where not yet valid)
        active = torch.tensor([x is not None for x in inputs], device=self.device)
        audio = tokens[:, 1:]
        valid = (audio >= 0).all(dim=1)[:, 0] & active
        out_pcm = None
        if bool(valid.any()):
            mimi.set_exec_mask(valid)
            decoded = mimi.decode(torch.where(valid[:, None, None], audio, 0)).clamp(-1, 1)
            out_pcm = decoded[:, 0].float().cpu().numpy()
        text_ids = tokens[:, 0, 0].tolist()
        return [
            None if frame is None else MoshiOutput(
                out_pcm[row].copy() if out_pcm is not None and bool(valid[row]) else None,
                self._piece(text_ids[row]),
            )
            for row, frame in enumerate(inputs)
        ]
