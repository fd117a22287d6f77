"""Kyutai streaming TTS: text in, 80 ms frames of 24 kHz audio out, for many streams batched
on one model, each with its own voice.

This is moshi's `TTSModel.generate` loop (the DSM state machine feeding words, the second text
stream with lookahead, acoustic delays) rewritten per batch row: each row has its own step
offset, machine state and speaker conditioning, so a stream joins and leaves while the others
keep generating. Text can be added while a stream runs; a row waits (does not step) while it
needs words that have not arrived yet. A row's generation state lives on the model thread;
the event loop only hands it new words and reads back whether the row waits for more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batching import BatchedEngine, BatchedStream, StepObserver
from .moshi_compat import cross_attention_modules, set_row_conditions

CFG_COEF = 2.0  # as Kyutai's own TTS server configuration
MAX_SECONDS_PER_WORD = 2.0
VOICE_CACHE = 64  # voices whose conditioning is kept


class UnknownVoiceError(ValueError):
    """The voice is not in the voice repository / directory (or cannot be loaded)."""


@dataclass
class _Voice:
    attributes: Any  # moshi ConditionAttributes
    cross: torch.Tensor | None  # [T, D] speaker cross-attention source
    total: torch.Tensor | None  # [1, D] summed conditions (control, cfg)


@dataclass
class TtsWork:
    """What a row needs for its next step, taken in the event loop and handed to the model
    thread (which alone owns the row's state machine)."""

    voice: _Voice | None  # set on the stream's first step
    words: list[Any] = field(default_factory=list)  # moshi tts.Entry
    extra_steps: int = 0  # more steps allowed for the new words (or the end)
    complete: bool = False


@dataclass
class TtsStep:
    """One step's result for a row, computed in the model thread."""

    pcm: np.ndarray | None
    finished: bool
    waiting: bool  # out of words and done speaking the last one: no step until more text


@dataclass
class _Row:
    """The generation state of one row, owned by the model thread."""

    machine: Any  # moshi tts.State
    offset: int = 0
    max_steps: int = 0
    complete: bool = False


class TtsStream(BatchedStream[np.ndarray]):
    """One synthesis: add text, end it, read audio frames as they are decoded."""

    def __init__(self, engine: TextToSpeech, voice: _Voice) -> None:
        super().__init__(engine.scheduler)
        self.engine = engine
        self._voice: _Voice | None = voice
        self._pending: list[Any] = []
        self._extra_steps = 0
        self._complete = False
        self._complete_sent = False
        self._first_chunk = True
        self._waiting = True  # never step before the first word
        self.done = False
        self.steps = 0
        self.frames_out = 0

    def add_text(self, text: str) -> None:
        """Append text (whole words; a word split across calls is read as two)."""
        entries = self.engine.model.prepare_script([text], padding_between=1)
        if not entries:
            return
        if not self._first_chunk and self.engine.model.multi_speaker:
            # prepare_script starts every call with a speaker-turn token; keep only the first
            speakers = (self.engine.token_ids.main, self.engine.token_ids.other)
            if entries[0].tokens and entries[0].tokens[0] in speakers:
                entries[0].tokens = entries[0].tokens[1:]
        self._first_chunk = False
        self._pending.extend(entries)
        self._extra_steps += int(len(entries) * MAX_SECONDS_PER_WORD * self.engine.frame_rate)
        self.engine.scheduler.wake()

    def end_text(self) -> None:
        """No more text: generate to the end of what was given."""
        self._complete = True
        self._extra_steps += int(4 * self.engine.frame_rate)
        self.engine.scheduler.wake()

    # -- scheduler protocol --
    def has_work(self) -> bool:
        if self.done:
            return False
        return bool(self._pending) or (self._complete and not self._complete_sent) or not self._waiting

    def take(self) -> TtsWork:
        work = TtsWork(self._voice, self._pending, self._extra_steps, self._complete)
        self._voice, self._pending, self._extra_steps = None, [], 0
        self._complete_sent = self._complete
        return work

    def deliver(self, output: TtsStep) -> None:
        self.steps += 1
        self._waiting = output.waiting
        if output.pcm is not None:
            self.frames_out += 1
            self._emit(output.pcm)
        if output.finished:
            self.done = True
            self._end()

    def fail(self, message: str) -> None:
        self.done = True
        super().fail(message)

    def audio(self) -> AsyncIterator[np.ndarray]:
        """Decoded 1920-sample float32 frames until the end of the text."""
        return self._items()

    async def close(self) -> None:
        self.done = True
        await super().close()


class TextToSpeech(BatchedEngine):
    """A Kyutai TTS model shared by up to `capacity` concurrent streams."""

    def __init__(
        self, model: Any, capacity: int, executor: ThreadPoolExecutor,
        on_step: StepObserver | None = None, list_voices: Callable[[str], list[str]] | None = None,
        skip_idle_depformer: bool = True,
    ) -> None:
        """`list_voices(suffix)`: the voice names of the model's voice repository (file names
        without `suffix`); `skip_idle_depformer`: no depformer on steps where no row's audio is
        due (off only to measure what it saves)."""
        super().__init__("tts", model.mimi, capacity, self._step, executor, on_step)
        self.model = model
        self._list_voices = list_voices
        self.token_ids = model.machine.token_ids
        self.device = next(model.lm.parameters()).device
        self._voices: dict[str, _Voice] = {}
        self._rows: list[_Row | None] = [None] * capacity  # model thread only
        self._stepping: list[bool] = [False] * capacity  # rows executed by the current step
        self._lm_gen: Any = None
        self._cross_attention = cross_attention_modules(model.lm)
        if not model.multistream:
            model.lm.dep_q = model.n_q
        # steps from a word entering the text stream to the end of its audio
        self.tail_steps = model.delay_steps + max(model.lm.delays) + model.final_padding
        lm = model.lm
        self._silence = torch.full((capacity, lm.dep_q, 1), self.token_ids.zero, dtype=torch.long, device=self.device)
        self.skip_idle_depformer = skip_idle_depformer
        self.depformer_skips = 0  # steps that ran without the depformer (no row's audio due)

    def voices(self) -> list[str]:
        """The voices of the voice repository."""
        return self._list_voices(str(self.model.voice_suffix)) if self._list_voices is not None else []

    async def check_voice(self, voice: str) -> None:
        """Raise UnknownVoiceError unless `voice` can be used."""
        await self._in_thread(self._voice, voice)

    async def open(self, voice: str) -> TtsStream:
        """A new stream speaking with `voice` (waits while every row is busy)."""
        conditioning = await self._in_thread(self._voice, voice)
        if self._lm_gen is None:
            await self._in_thread(self._start, conditioning)
        stream = TtsStream(self, conditioning)
        stream.row = await self.scheduler.acquire(stream)
        return stream

    # -- model thread --
    def _attributes(self, voice_path: Path | None) -> Any:
        cfg = CFG_COEF if self.model.valid_cfg_conditionings else None
        voices = [voice_path] if voice_path is not None else []
        return self.model.make_condition_attributes(voices, cfg_coef=cfg)

    @torch.no_grad()
    def _voice(self, name: str) -> _Voice:
        if name in self._voices:
            return self._voices[name]
        path: Path | None = None
        if self.model.multi_speaker:
            try:
                path = Path(name) if name.endswith(".safetensors") else self.model.get_voice_path(name)
            except Exception as err:  # any lookup failure means "no such voice"
                raise UnknownVoiceError(f"unknown voice '{name}'") from err
        lm = self.model.lm
        attributes = self._attributes(path)
        provided = lm.condition_provider.prepare_and_provide([attributes])
        cross = lm.fuser.get_cross(provided)
        total = lm.fuser.get_sum(provided)
        voice = _Voice(
            attributes=attributes,
            cross=None if cross is None else cross[0].to(lm.dtype),
            total=None if total is None else total[0].to(lm.dtype),
        )
        self._voices[name] = voice
        while len(self._voices) > VOICE_CACHE:  # the oldest conditioning goes first
            del self._voices[next(iter(self._voices))]
        return voice

    @torch.no_grad()
    def _start(self, voice: _Voice) -> None:
        from moshi.models.lm import LMGen

        if self._lm_gen is not None:
            return
        lm = self.model.lm
        # every row starts with the first voice; each stream sets its own on its first step
        attributes = [voice.attributes] * self.capacity
        conditions = lm.condition_provider.prepare_and_provide(attributes) if lm.condition_provider else {}
        self._lm_gen = LMGen(
            lm, temp=self.model.temp, temp_text=self.model.temp, cfg_coef=self.model.cfg_coef,
            condition_tensors=conditions, on_text_logits_hook=self._on_text_logits,
            on_text_hook=self._on_text, on_audio_hook=self._on_audio, support_out_of_sync=True,
        )
        self._lm_gen.streaming_forever(self.capacity)
        self.model.mimi.streaming_forever(self.capacity)

    def _set_voice(self, row: int, voice: _Voice) -> None:
        if not set_row_conditions(self._lm_gen, self._cross_attention, row, voice.total, voice.cross):
            raise UnknownVoiceError("voice embedding does not fit this model")

    def _on_text_logits(self, logits: torch.Tensor) -> None:
        if self.model.padding_bonus:
            logits[..., self.token_ids.pad] += self.model.padding_bonus

    def _on_text(self, tokens: torch.Tensor) -> None:
        out = []
        for index, token in enumerate(tokens.tolist()):
            row = self._rows[index]
            if row is None or not self._stepping[index]:
                out.append(self.token_ids.pad)
                continue
            machine = row.machine
            if not row.complete and not machine.entries and not machine.queued:
                machine.forced_padding = max(machine.forced_padding, 1)  # wait for more words
            out.append(self.model.machine.process(row.offset, machine, token)[0])
        tokens[:] = torch.tensor(out, dtype=torch.long, device=tokens.device)

    def _on_audio(self, audio_tokens: torch.Tensor) -> None:
        lm = self.model.lm
        for index, row in enumerate(self._rows):
            if row is None or not self._stepping[index]:
                continue
            for q in range(audio_tokens.shape[1]):
                if row.offset < lm.delays[q + lm.audio_offset] + self.model.delay_steps:
                    audio_tokens[index, q] = self.token_ids.zero

    def _silence_if_no_audio_due(self) -> torch.Tensor | None:
        """The audio tokens of a step in which no stepping row's audio is due yet (its first
        `delay_steps`): silence, as moshi's own TTS does, instead of running the depformer over
        every codebook for tokens the audio hook would replace by silence anyway."""
        stepping = [row for row, on in zip(self._rows, self._stepping, strict=True) if on and row is not None]
        if not self.skip_idle_depformer or any(row.offset >= self.model.delay_steps for row in stepping):
            return None
        self.depformer_skips += 1
        return self._silence

    def _advance(self, row: _Row) -> tuple[bool, bool]:
        """After a step: (finished, waiting for more text)."""
        row.offset += 1
        machine = row.machine
        end = machine.end_step
        finished = (
            end is not None and row.offset >= end + self.model.delay_steps + self.model.final_padding
        ) or row.offset >= max(row.max_steps, 1)
        # out of words, more to come: finish speaking the last one (its audio lags the text)
        waiting = not row.complete and not machine.entries and not machine.queued and (
            not machine.consumption_times or row.offset - machine.consumption_times[-1] >= self.tail_steps
        )
        return finished, waiting

    @torch.no_grad()
    def _step(self, inputs: Sequence[TtsWork | None], resets: Sequence[bool]) -> list[TtsStep | None]:
        mimi, lm = self.model.mimi, self.model.lm
        device = self.device
        if any(resets):
            mask = torch.tensor(resets, device=device)
            self._lm_gen.reset_streaming(mask)
            mimi.reset_streaming(mask)
        for index, work in enumerate(inputs):
            self._stepping[index] = work is not None
            if work is None:
                continue
            if resets[index] or self._rows[index] is None:
                self._rows[index] = _Row(self.model.machine.new_state([]))
            row = self._rows[index]
            assert row is not None
            if work.voice is not None:
                self._set_voice(index, work.voice)
            row.machine.entries.extend(work.words)
            row.max_steps += work.extra_steps
            row.complete = row.complete or work.complete
        exec_mask = torch.tensor(self._stepping, device=device)
        self._lm_gen.set_exec_mask(exec_mask)
        missing = lm.n_q - lm.dep_q
        input_tokens = torch.full((self.capacity, missing, 1), self.token_ids.zero, dtype=torch.long, device=device)
        frame = self._lm_gen.step(input_tokens, depformer_replace_tokens=self._silence_if_no_audio_due())
        audio = frame[:, 1:] if frame is not None else None
        valid = (audio >= 0).all(dim=1)[:, 0] & exec_mask if audio is not None else exec_mask & False
        pcm = None
        if audio is not None and bool(valid.any()):
            mimi.set_exec_mask(valid)
            pcm = mimi.decode(torch.where(valid[:, None, None], audio, 0)).clamp(-1, 1)[:, 0].float().cpu().numpy()
        results: list[TtsStep | None] = []
        for index, work in enumerate(inputs):
            row = self._rows[index]
            if work is None or row is None:
                results.append(None)
                continue
            finished, waiting = self._advance(row)
            results.append(TtsStep(pcm[index].copy() if pcm is not None and bool(valid[index]) else None,
                                   finished, waiting))
        return results
