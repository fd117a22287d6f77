"""Kyutai streaming STT: 80 ms frames of 24 kHz audio in, text pieces and an end-of-turn
probability out, for many streams batched on one model."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import Framer
from .batching import BatchedStream, StepObserver
from .lm import AudioLMEngine, LMStack

END_OF_TURN_HEAD = 2  # the extra head Kyutai's tools read as "the speaker has finished"


@dataclass
class SttOutput:
    """One model step of one stream."""

    text: str  # the text piece decoded at this step ("" when none)
    end_of_turn: float | None  # end-of-turn probability (None when the model has no heads)


@dataclass
class SttFrame:
    pcm: np.ndarray  # 1920 float32 samples at 24 kHz
    last: bool


class SttStream(BatchedStream[SttOutput]):
    """One utterance: feed audio, then finish; read outputs as they are produced."""

    def __init__(self, engine: SpeechToText) -> None:
        super().__init__(engine.scheduler)
        self.engine = engine
        self._framer = Framer(engine.frame_size)
        self._frames: deque[SttFrame] = deque()
        self._finished = False
        self.frames_in = 0
        self.samples_fed = 0
        silence = np.zeros(engine.frame_size, dtype=np.float32)
        self._frames.extend(SttFrame(silence, last=False) for _ in range(engine.prefix_frames))

    # -- feeding (event loop) --
    def feed(self, samples: np.ndarray) -> None:
        """Append float32 mono samples at 24 kHz."""
        if self._finished:
            raise RuntimeError("stream already finished")
        self.samples_fed += samples.size
        self._frames.extend(SttFrame(frame, last=False) for frame in self._framer.push(samples))
        self.engine.scheduler.wake()

    def prepare(self) -> None:
        """Nothing to prepare: the text streams as the audio is heard."""

    def finish(self, trailing_silence: float = 0.0) -> None:
        """End of audio: pad the last frame and flush the model's text delay with silence.

        `trailing_silence` (seconds of non-speech already at the end of the audio, e.g. from a
        VAD) counts toward the flush: after a client-side end-of-speech timeout the model has
        usually heard its whole delay already, and the final text needs one more frame only.
        """
        if self._finished:
            return
        self._finished = True
        if not self.samples_fed:  # no audio at all: nothing to transcribe
            self._frames.clear()
            self._end()
            return
        size = self.engine.frame_size
        rest = self._framer.rest()
        if rest.size:
            self._frames.append(SttFrame(rest, last=False))
        silence = np.zeros(size, dtype=np.float32)
        heard = int(max(trailing_silence, 0.0) * self.engine.frame_rate)
        count = max(1, self.engine.flush_frames - heard)
        for i in range(count):
            self._frames.append(SttFrame(silence, last=i == count - 1))
        self.engine.scheduler.wake()

    # -- scheduler protocol --
    def has_work(self) -> bool:
        return bool(self._frames)

    def take(self) -> SttFrame:
        return self._frames.popleft()

    def deliver(self, output: tuple[SttOutput, bool]) -> None:
        result, last = output
        self.frames_in += 1
        self._emit(result)
        if last:
            self._end()

    def outputs(self) -> AsyncIterator[SttOutput]:
        """Outputs until the flush after `finish` is through."""
        return self._items()

    async def close(self) -> None:
        self._frames.clear()
        await super().close()


class SpeechToText(AudioLMEngine):
    """A Kyutai STT model shared by up to `capacity` concurrent streams."""

    def __init__(
        self, stack: LMStack, capacity: int, executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None,
    ) -> None:
        super().__init__("stt", stack, capacity, self._step, executor, on_step)
        stt_config = stack.info.stt_config
        self.delay_seconds = float(stt_config.get("audio_delay_seconds", 0.0))
        self.flush_frames = math.ceil(self.delay_seconds * self.frame_rate) + 1
        self.prefix_frames = round(
            float(stt_config.get("audio_silence_prefix_seconds", 0.0)) * self.frame_rate
        )
        self.has_end_of_turn = len(stack.lm.extra_heads) > END_OF_TURN_HEAD

    async def open(self) -> SttStream:
        """A new stream with its own model row (waits while every row is busy)."""
        stream = SttStream(self)
        await self._open(stream)
        return stream

    @torch.no_grad()
    def _step(
        self, inputs: Sequence[SttFrame | None], resets: Sequence[bool]
    ) -> list[tuple[SttOutput, bool] | None]:
        codes = self._encode([f.pcm if f is not None else None for f in inputs], resets)
        stepped = self._lm_gen.step_with_extra_heads(codes)
        assert stepped is not None  # out-of-sync support: every step returns tokens (-1 where not yet valid)
        tokens, heads = stepped
        text_ids = tokens[:, 0, 0].tolist()
        ends = heads[END_OF_TURN_HEAD][:, 0, 0].tolist() if self.has_end_of_turn else None
        return [
            None
            if frame is None
            else (SttOutput(self._piece(text_ids[row]), ends[row] if ends else None), frame.last)
            for row, frame in enumerate(inputs)
        ]
