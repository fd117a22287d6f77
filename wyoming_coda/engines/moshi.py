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

from ..models import LMStack
from .batching import BatchedEngine, BatchedStream, StepObserver
from .stt import NO_TEXT


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
        self._buffer = np.zeros(0, dtype=np.float32)
        self._frames: deque[np.ndarray] = deque()
        self.frames_in = 0

    def feed(self, samples: np.ndarray) -> None:
        """Append float32 mono samples at 24 kHz (any length; whole frames are stepped)."""
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        size = self.engine.frame_size
        whole = self._buffer.size // size * size
        self._frames.extend(self._buffer[i:i + size] for i in range(0, whole, size))
        self._buffer = self._buffer[whole:]
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


class MoshiEngine(BatchedEngine):
    """A Moshi model shared by up to `capacity` concurrent sessions."""

    def __init__(
        self, stack: LMStack, capacity: int, executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None,
    ) -> None:
        from moshi.models import LMGen

        super().__init__("moshi", stack.mimi, capacity, self._step, executor, on_step)
        self.stack = stack
        self.device = next(stack.lm.parameters()).device
        self._lm_gen = LMGen(stack.lm, support_out_of_sync=True, **stack.info.lm_gen_config)
        self._started = False

    async def open(self) -> MoshiSession:
        """A new session with its own row (waits while every row is busy)."""
        if not self._started:
            await self._in_thread(self._start)
        session = MoshiSession(self)
        session.row = await self.scheduler.acquire(session)
        return session

    def _start(self) -> None:
        if not self._started:
            self.stack.mimi.streaming_forever(self.capacity)
            self._lm_gen.streaming_forever(self.capacity)
            self._started = True

    def _piece(self, token: int) -> str:
        if token in NO_TEXT or token < 0:
            return ""
        return self.stack.tokenizer.id_to_piece(token).replace("▁", " ")

    @torch.no_grad()
    def _step(self, inputs: Sequence[np.ndarray | None], resets: Sequence[bool]) -> list[MoshiOutput | None]:
        mimi, device = self.stack.mimi, self.device
        if any(resets):
            reset_mask = torch.tensor(resets, device=device)
            mimi.reset_streaming(reset_mask)
            self._lm_gen.reset_streaming(reset_mask)
        active = torch.tensor([x is not None for x in inputs], device=device)
        mimi.set_exec_mask(active)
        self._lm_gen.set_exec_mask(active)
        pcm = np.zeros((self.capacity, 1, self.frame_size), dtype=np.float32)
        for row, frame in enumerate(inputs):
            if frame is not None:
                pcm[row, 0] = frame
        tokens = self._lm_gen.step(mimi.encode(torch.from_numpy(pcm).to(device)))
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
