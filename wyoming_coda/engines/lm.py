"""What the STT and Moshi engines share: a streaming Kyutai LM fed by Mimi-encoded audio
frames, one batch row per stream."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..models import LMStack
from .batching import BatchedEngine, BatchedStream, StepFn, StepObserver

NO_TEXT = (0, 3)  # Kyutai text ids that carry no text (unk / pad)


class AudioLMEngine(BatchedEngine):
    """Mimi encoder + LMGen over `capacity` rows; subclasses turn the step's tokens into outputs."""

    def __init__(
        self, name: str, stack: LMStack, capacity: int, step: StepFn, executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None,
    ) -> None:
        from moshi.models import LMGen

        super().__init__(name, stack.mimi, capacity, step, executor, on_step)
        self.stack = stack
        self.device = next(stack.lm.parameters()).device
        self._lm_gen = LMGen(stack.lm, support_out_of_sync=True, **stack.info.lm_gen_config)
        self._started = False

    async def _open(self, stream: BatchedStream[Any]) -> None:
        """Give `stream` a row (starting the streaming state on first use)."""
        if not self._started:
            await self._in_thread(self._start)
        stream.row = await self.scheduler.acquire(stream)

    def _start(self) -> None:
        if not self._started:
            self.stack.mimi.streaming_forever(self.capacity)
            self._lm_gen.streaming_forever(self.capacity)
            self._started = True

    def _piece(self, token: int) -> str:
        if token in NO_TEXT or token < 0:
            return ""
        return self.stack.tokenizer.id_to_piece(token).replace("▁", " ")

    def _encode(self, frames: Sequence[np.ndarray | None], resets: Sequence[bool]) -> torch.Tensor:
        """Reset the rows of new streams, mask idle rows, Mimi-encode this step's frames."""
        mimi, device = self.stack.mimi, self.device
        if any(resets):
            reset_mask = torch.tensor(resets, device=device)
            mimi.reset_streaming(reset_mask)
            self._lm_gen.reset_streaming(reset_mask)
        active = torch.tensor([f is not None for f in frames], device=device)
        mimi.set_exec_mask(active)
        self._lm_gen.set_exec_mask(active)
        pcm = np.zeros((self.capacity, 1, self.frame_size), dtype=np.float32)
        for row, frame in enumerate(frames):
            if frame is not None:
                pcm[row, 0] = frame
        return mimi.encode(torch.from_numpy(pcm).to(device))
