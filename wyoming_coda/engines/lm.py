"""What the STT and Moshi engines share: a streaming Kyutai LM fed by Mimi-encoded audio
frames, one batch row per stream, and the stack of models behind it."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .batching import BatchedEngine, BatchedStream, StepFn, StepObserver
from .moshi_compat import load_lm

NO_TEXT = (0, 3)  # Kyutai text ids that carry no text (unk / pad)


@dataclass
class LMStack:
    """A streaming Kyutai LM with its audio codec and text tokenizer (STT and Moshi)."""

    info: Any  # moshi CheckpointInfo
    mimi: Any  # moshi MimiModel
    lm: Any  # moshi LMModel
    tokenizer: Any  # sentencepiece processor

    @classmethod
    def load(cls, info: Any, device: str, dtype: torch.dtype, quantize: bool = False) -> LMStack:
        """Load the three models of a resolved checkpoint; the LM in 8 bits for a q8 checkpoint
        or when `quantize` asks for it."""
        return cls(info=info, mimi=info.get_mimi(device=device), lm=load_lm(info, device, dtype, quantize),
                   tokenizer=info.get_text_tokenizer())


class AudioLMEngine(BatchedEngine):
    """Mimi encoder + LMGen over `capacity` rows; subclasses turn the step's tokens into outputs."""

    def __init__(
        self, name: str, stack: LMStack, capacity: int, step: StepFn[Any, Any], executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None, **hooks: Any,
    ) -> None:
        """`hooks`: LMGen's `on_text_hook` / `on_text_logits_hook` / `on_audio_hook`."""
        from moshi.models.lm import LMGen

        super().__init__(name, stack.mimi, capacity, step, executor, on_step)
        self.stack = stack
        self.device = next(stack.lm.parameters()).device
        self._lm_gen = LMGen(stack.lm, support_out_of_sync=True, **stack.info.lm_gen_config, **hooks)
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
        tokenizer = self.stack.tokenizer
        if token in NO_TEXT or token < 0 or tokenizer.is_control(token) or tokenizer.is_unknown(token):
            return ""
        return str(tokenizer.id_to_piece(token)).replace("▁", " ")

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
        codes: torch.Tensor = mimi.encode(torch.from_numpy(pcm).to(device))
        return codes
