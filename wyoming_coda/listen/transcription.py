"""Speech in: a transcription (the audio front end, an STT stream, end of turn) and the
`Transcriber` that opens them. Used by the Wyoming asr service, the voice-stream API and duplex
sessions alike."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..config import AudioConfig, STTConfig
from ..engines.batching import take_row
from ..engines.protocols import RecognitionStream, SpeechRecognizer
from .frontend import AudioFrontEnd, AudioQuality

KEPT_AUDIO_SECONDS = 30.0  # the longest utterance whose audio is kept for Moshi
PREPARE_AFTER_SILENCE_MS = 240  # a pause after speech this long: the engine may start on the text


@dataclass(frozen=True)
class EndOfTurnRules:
    """When a spoken command is over (the `stt.end_of_turn*` keys; docs/protocol.md, asr). The
    head's score is averaged over `smoothing` frames after the first `ignore` (as Kyutai's Unmute
    does); checkpoints without the head fall back to Silero VAD's silence."""

    threshold: float = 0.6
    smoothing: int = 4
    ignore: int = 12
    silence_ms: int = 700
    max_pause_ms: int = 1000
    no_speech_ms: int = 8000
    max_command_ms: int = 15000

    @classmethod
    def from_config(cls, stt: STTConfig) -> EndOfTurnRules:
        return cls(stt.end_of_turn_threshold, stt.end_of_turn_smoothing, stt.end_of_turn_ignore,
                   stt.end_of_turn_silence_ms, stt.end_of_turn_max_pause_ms, int(stt.no_speech_timeout * 1000),
                   int(stt.max_command_seconds * 1000))


@dataclass
class TextPiece:
    """Text the model produced."""

    text: str


@dataclass
class VoiceActivity:
    """Speech started or stopped at `ms` from the start of the audio."""

    started: bool
    ms: int
    source: str  # "vad" or "end-of-turn"


@dataclass
class Heard:
    """What one fed chunk gave: the audio the model heard (float32 at its rate) and the VAD
    onsets / offsets it completed."""

    audio: np.ndarray
    activity: list[VoiceActivity]


class Transcription:
    """One utterance: feed PCM in any format, read text pieces and voice activity as they come."""

    def __init__(
        self, stream: RecognitionStream, front: AudioFrontEnd, language: str,
        on_final: Callable[[Transcription, float], None] | None = None, rules: EndOfTurnRules | None = None,
    ) -> None:
        self.stream = stream
        self.front = front
        self.language = language
        self.rules = rules or EndOfTurnRules()
        self._on_final = on_final  # called once the final text is in, with the seconds since `finish`
        self._finished_at: float | None = None
        self._audio: list[np.ndarray] = []  # what the model heard, up to KEPT_AUDIO_SECONDS
        self._audio_samples = 0
        self.pieces: list[str] = []
        self.end_of_speech = asyncio.Event()
        self.heard_speech = False
        self._prepared = False  # the engine was told of the current pause
        self._end_scores: deque[float] = deque(maxlen=self.rules.smoothing)
        self.head_says_done = False  # the smoothed end-of-turn head, at the latest model step
        self.audio_ms = 0  # audio received so far
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)  # (audio ms at chunk end, arrival)
        self.end_of_speech_delay: float | None = None  # seconds from hearing the end of speech to saying so

    @property
    def text(self) -> str:
        return "".join(self.pieces).strip()

    def feed(self, data: bytes, rate: int, width: int, channels: int) -> Heard:
        """Feed PCM; returns what the model heard. Raises AudioFormatError."""
        out = self.front.process(data, rate, width, channels)
        self.audio_ms = int(self.front.samples * 1000 / rate)
        self._arrivals.append((self.audio_ms, time.monotonic()))
        self.stream.feed(out.audio)
        self._prepare()
        if self._audio_samples < KEPT_AUDIO_SECONDS * self.front.model_rate:
            self._audio.append(out.audio)
            self._audio_samples += out.audio.size
        return Heard(out.audio, [self._activity(e.kind == "started", e.ms, "vad") for e in out.vad])

    def _prepare(self) -> None:
        """Once per pause after speech: let the engine start on what was said (Whisper
        transcribes during the end-of-turn silence instead of after it)."""
        silence = self.front.silence_run_ms
        if not silence:
            self._prepared = False
        elif self.heard_speech and silence >= PREPARE_AFTER_SILENCE_MS and not self._prepared:
            self._prepared = True
            self.stream.prepare()

    @property
    def user_spoke(self) -> bool:
        """Whether the user may have spoken: the VAD heard speech, or there is no VAD. Words the
        model writes while the VAD hears none are not the user talking."""
        return self.front.vad is None or self.heard_speech

    def _activity(self, started: bool, ms: int, source: str) -> VoiceActivity:
        if started:
            self.heard_speech = True
            self.end_of_speech.clear()
        else:
            self.end_of_speech.set()
            heard = next((at for end, at in self._arrivals if end >= ms), None)
            if heard is not None and self.end_of_speech_delay is None:
                self.end_of_speech_delay = time.monotonic() - heard
        return VoiceActivity(started, ms, source)

    def audio(self) -> list[np.ndarray]:
        """The audio the model heard (float32 at its rate), up to KEPT_AUDIO_SECONDS."""
        return list(self._audio)

    def quality(self) -> AudioQuality | None:
        return self.front.quality()

    def finish(self) -> None:
        """End of audio: flush the resampler and the model's delay."""
        self._finished_at = time.monotonic()
        self.stream.feed(self.front.flush())
        self.stream.finish(self.front.silence_run_ms / 1000)

    async def results(self) -> AsyncIterator[TextPiece | VoiceActivity]:
        """Text pieces, and an end-of-turn offset from the model's head, until `finish` is through."""
        frame_ms = 1000 / self.stream.engine.frame_rate
        async for output in self.stream.outputs():
            if output.text:
                self.pieces.append(output.text)
                yield TextPiece(output.text)
            if self._end_of_turn(output.end_of_turn) and not self.end_of_speech.is_set():
                yield self._activity(False, int(self.stream.frames_in * frame_ms), "end-of-turn")
        if self._finished_at is not None and self._on_final is not None:
            self._on_final(self, time.monotonic() - self._finished_at)

    def _end_of_turn(self, score: float | None) -> bool:
        """Whether the model's head, smoothed, says the speaker is done."""
        if score is None or not self.user_spoke or self.stream.frames_in <= self.rules.ignore:
            return False
        self._end_scores.append(score)
        window = self.rules.smoothing
        self.head_says_done = len(self._end_scores) == window and sum(self._end_scores) / window > self.rules.threshold
        return self.head_says_done

    def turn_over(self) -> str | None:
        """Why the spoken command is over now, or None while it goes on: "end-of-turn" (the
        model's head, the VAD hearing no speech in its latest window), "pause" (a silence longer
        than the head may hold the turn), "silence" (VAD only, for checkpoints without the head),
        "no-speech", "max-length"."""
        rules, vad = self.rules, self.front.vad is not None
        if self.audio_ms >= rules.max_command_ms:
            return "max-length"
        if not (self.heard_speech if vad else self.text):
            return "no-speech" if self.audio_ms >= rules.no_speech_ms else None
        silence = self.front.silence_run_ms
        if vad and not silence:
            return None  # the user is speaking right now
        if self.stream.engine.has_end_of_turn:
            if self.head_says_done:
                return "end-of-turn"
            return "pause" if vad and silence >= rules.max_pause_ms else None
        return "silence" if vad and silence >= rules.silence_ms else None

    async def close(self) -> None:
        await self.stream.close()


class SttSource(Protocol):
    """Where the STT engine comes from (the model store)."""

    async def stt(self) -> SpeechRecognizer: ...

    def languages(self, kind: str) -> list[str]: ...


class Transcriber:
    """Opens transcriptions: an STT row behind the audio front end, with the end-of-turn rules
    and the front end's settings of this server; `on_final` accounts each finished one."""

    def __init__(
        self, engines: SttSource, audio: AudioConfig, stt: STTConfig,
        on_final: Callable[[Transcription, float], None] | None = None, row_wait: float = 10.0,
    ) -> None:
        """`row_wait`: seconds to wait for a free STT row before EngineBusyError."""
        self.engines = engines
        self.row_wait = row_wait
        self.audio = audio
        self.stt = stt
        self.on_final = on_final

    async def open(self, language: str | None = None, duplex: bool = False) -> Transcription:
        """A streaming transcription (`duplex`: echo cancellation and frame-exact resampling for
        a session whose output the server plays; not accounted as a command)."""
        engine = await self.engines.stt()
        stream = await take_row(engine.open(), self.row_wait, "speech-to-text")
        front = AudioFrontEnd.from_config(self.audio, engine.sample_rate, duplex)
        return Transcription(stream, front, language or self.engines.languages("stt")[0],
                             on_final=None if duplex else self.on_final, rules=EndOfTurnRules.from_config(self.stt))
