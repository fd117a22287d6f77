"""Full-duplex Moshi sessions over a WebSocket (`/api/duplex` on the HTTP side port).

Binary messages, one kind byte then the payload (the vocabulary is `messages.py`; see
docs/duplex.md):

    0 handshake  server → client  JSON {version, sample_rate, frame_size, format, session, voice,
                                  voices (the Moshi voices to pick from with ?voice=), home: the
                                  linked Home Assistant whose tools the LLM has, or null}
    1 audio      both ways        Ogg/Opus pages (format=opus, default), or 24 kHz mono PCM:
                                  s16le (format=pcm) or float32le (format=f32)
    2 text       server → client  UTF-8 piece of Moshi's inner monologue
    3 control    both ways        JSON: client {"action": "close"} or {"action": "text", "text"} (typed
                                  words, answered by the LLM in Moshi's voice); server {"event":
                                  "interruption" | "resume" | "llm_turn" | "tool_call" | ...}
    4 metadata   server → client  JSON per step: {"frame", "step_ms", "late", "user_speaking", "muted"}
    5 error      server → client  JSON {"code", "text"}
    6 ping       both ways        echoed back as is
    7 user text  server → client  UTF-8 piece of the user's words (Kyutai STT alongside Moshi)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sphn
from aiohttp import WSMsgType, web

from ..aio import IdleBound
from ..audio import FRAME_RATE, FRAME_SIZE, SAMPLE_RATE, Framer, float_to_s16
from ..engines.batching import EngineBusyError, take_row
from ..engines.moshi import MoshiOutput, MoshiSession
from ..events import EventBus, TranscriptEvent, UserInterrupted
from ..listen.transcription import TextPiece, Transcriber, Transcription
from ..metrics import Metrics
from ..models.store import ModelStore
from ..turn.conversation import Conversations
from ..turn.homelink import HomeLinks
from ..turn.runner import TurnRunner
from ..turn.tools import TimerBells
from .messages import (
    FORMATS,
    PROTOCOL_VERSION,
    AskText,
    Close,
    ErrorMessage,
    Handshake,
    Interruption,
    Kind,
    MessageError,
    Metadata,
    Resume,
    ServerMessage,
    pack,
    parse_control,
)
from .router import DuplexRouter

_LOGGER = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20
SPEAKING_DBFS = -45.0  # an output frame louder than this means the assistant is talking
SPEAKING_HOLD_FRAMES = 4  # ... and still counts as talking for 320 ms after
MAX_MESSAGE_SECONDS = 5.0  # audio one message may carry (decoded Opus included)
AHEAD_SECONDS = 5.0  # audio a client may send ahead of real time: frames past it are dropped
MAX_PENDING_FRAMES = 125  # and user frames Moshi has not stepped yet (10 s): past it too


@dataclass(frozen=True)
class DuplexParts:
    """What duplex sessions use of the voice system."""

    store: ModelStore  # the Moshi voices
    transcriber: Transcriber
    turns: TurnRunner
    conversations: Conversations
    homes: HomeLinks
    timers: TimerBells
    metrics: Metrics
    events: EventBus
    target_latency_ms: float
    row_wait: float  # seconds a session waits for a free Moshi row
    idle_seconds: float  # a session that sends no audio this long ends


class DuplexConnection:
    """One WebSocket client talking with Moshi."""

    def __init__(
        self, ws: web.WebSocketResponse, parts: DuplexParts, audio_format: str, voice: str | None = None
    ) -> None:
        self.ws = ws
        self.parts = parts
        self.format = audio_format
        self.voice = voice
        self.session: MoshiSession | None = None
        self.transcription: Transcription | None = None
        self.conversation_id = ""
        self._decoder = sphn.OpusStreamReader(SAMPLE_RATE) if audio_format == "opus" else None
        self._encoder = sphn.OpusStreamWriter(SAMPLE_RATE) if audio_format == "opus" else None
        self._framer = Framer(FRAME_SIZE)
        self.muted = False  # the user talked over the assistant: its audio is held back
        self.router: DuplexRouter | None = None
        self._utterance_end: asyncio.Task[None] | None = None
        self._speaking_frames = 0
        self._last_step = time.monotonic()
        self._heard = IdleBound(parts.idle_seconds)  # touched by each audio message
        self.dropped_frames = 0
        self.frames_taken = 0
        self._started = time.monotonic()

    async def send(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionResetError):
            await self.ws.send_bytes(data)

    async def error(self, code: str, text: str) -> None:
        await self.send(ErrorMessage(code, text).encode())

    async def _message(self, message: ServerMessage) -> None:
        await self.send(message.encode())

    async def run(self) -> None:
        parts = self.parts
        self.session = await take_row((await parts.store.moshi(self.voice)).open(), parts.row_wait, "Moshi")
        voices = parts.store.moshi_voices()
        self.conversation_id = parts.conversations.start(None, "duplex", None, None)
        home = parts.homes.for_duplex()
        await self._message(Handshake(
            PROTOCOL_VERSION, SAMPLE_RATE, self.session.engine.frame_size, self.format, self.conversation_id,
            self.voice or voices[0], voices, home.name if home else None))
        self._heard.touch()
        self._started = time.monotonic()  # real time runs from here
        self.transcription = await parts.transcriber.open(None, duplex=True)
        self.router = DuplexRouter(parts.turns, parts.conversations, parts.homes, self.session, self.conversation_id,
                                   self._message, catch_up=self.transcription.stream.engine.delay_seconds)
        stop_timers = parts.timers.listen(self.conversation_id, self.router.timer_rang)
        tasks = [asyncio.create_task(self._write(self.session), name="duplex writer"),
                 asyncio.create_task(self._transcribe(self.transcription), name="duplex user transcript"),
                 asyncio.create_task(self._close_when_idle(), name="duplex idle bound")]
        parts.metrics.connection("duplex", +1)
        try:
            await self._read()
        finally:
            parts.metrics.connection("duplex", -1)
            stop_timers()
            if self._utterance_end is not None:
                self._utterance_end.cancel()
            await self.router.close()
            await self.session.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.transcription.close()
            parts.conversations.end(self.conversation_id)

    async def _close_when_idle(self) -> None:
        """A session whose audio stops coming gives its Moshi row back."""
        await self._heard.expired()
        await self.error("stream-idle", f"no audio for {self._heard.seconds:g} s: the session ended")
        await self.ws.close()

    async def _transcribe(self, transcription: Transcription) -> None:
        """The user's side of the live transcript."""
        async for result in transcription.results():
            if isinstance(result, TextPiece):
                if self.router is not None:
                    self.router.user_words(result.text)
                await self.send(pack(Kind.USER_TEXT, result.text.encode()))
                self.parts.events.publish(TranscriptEvent("user", result.text, False, self.conversation_id))

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != WSMsgType.BINARY:
                if message.type == WSMsgType.TEXT:
                    await self.error("malformed-message", "messages are binary: a kind byte, then the payload")
                continue
            data: bytes = message.data
            if not data:
                await self.error("malformed-message", "empty message")
                continue
            kind, payload = data[0], data[1:]
            if kind == Kind.AUDIO:
                await self._audio(payload)
            elif kind == Kind.PING:
                await self.send(data)
            elif kind == Kind.CONTROL:
                if await self._control(payload):
                    return
            else:
                await self.error("malformed-message", f"unexpected message kind {kind}")

    async def _control(self, payload: bytes) -> bool:
        """Handle a control message; True when the client ends the session."""
        try:
            control = parse_control(payload)
        except MessageError as err:
            await self.error("malformed-message", str(err))
            return False
        if isinstance(control, Close):
            await self.ws.close()
            return True
        if isinstance(control, AskText) and self.router is not None:
            await self.router.ask_llm(control.text)
        return False

    async def _audio(self, payload: bytes) -> None:
        if self._decoder is not None:
            try:
                samples = self._decoder.append_bytes(payload)
            except Exception as err:  # noqa: BLE001 - a broken Opus stream is the client's error
                await self.error("bad-audio", f"not an Ogg/Opus stream: {err}")
                return
        else:
            width = 4 if self.format == "f32" else 2
            if len(payload) % width:
                await self.error("bad-audio", f"PCM audio must be whole {width * 8}-bit samples")
                return
            samples = (np.frombuffer(payload, dtype="<f4").astype(np.float32) if width == 4
                       else np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768)
        if samples.size > MAX_MESSAGE_SECONDS * SAMPLE_RATE:
            await self.error("bad-audio", f"a message carries at most {MAX_MESSAGE_SECONDS:g} s of audio")
            return
        self._heard.touch()
        for frame in self._framer.push(samples):
            await self._frame(frame)

    async def _frame(self, frame: np.ndarray) -> None:
        """One 80 ms user frame through the transcription's front end (echo of Moshi's own
        voice, noise and level at 16 kHz, VAD), then to Moshi and the user transcript.

        The front end resamples frame by frame (1920 ↔ 1280 samples exactly), so nothing waits
        in a streaming resampler: each frame reaches Moshi as soon as it is complete."""
        assert self.session is not None and self.transcription is not None
        ahead = self.frames_taken / FRAME_RATE - (time.monotonic() - self._started)
        if ahead > AHEAD_SECONDS or self.session.pending >= MAX_PENDING_FRAMES:  # the excess is dropped, counted
            self.dropped_frames += 1
            self.parts.metrics.error("duplex-audio-overrun")
            return
        self.frames_taken += 1
        heard = self.transcription.feed(float_to_s16(frame), SAMPLE_RATE, 2, 1)
        self.session.feed(heard.audio)
        for activity in heard.activity:
            await self._user_voice(activity.started)

    async def _end_utterance_later(self, delay: float) -> None:
        """Route the utterance once the STT has caught up with its last words."""
        await asyncio.sleep(delay)
        if self.router is not None:
            await self.router.end_of_utterance()

    async def _user_voice(self, started: bool) -> None:
        if self._utterance_end is not None and not self._utterance_end.done():
            self._utterance_end.cancel()  # the user goes on: the utterance is not over
        if started and self.router is not None and self.router.answering:
            await self.router.interrupt()
        elif not started and self.transcription is not None:
            delay = self.transcription.stream.engine.delay_seconds
            self._utterance_end = asyncio.create_task(self._end_utterance_later(delay), name="duplex utterance end")
        if started and self._speaking_frames > 0 and not self.muted:
            self.muted = True  # from the next frame on, nothing of the assistant goes out
            self.parts.metrics.interruption()
            self.parts.events.publish(UserInterrupted(self.conversation_id))
            await self._message(Interruption())
        elif not started and self.muted:
            self.muted = False
            await self._message(Resume())

    async def _write(self, session: MoshiSession) -> None:
        async for output in session.outputs():
            await self._output(output)

    async def _output(self, output: MoshiOutput) -> None:
        now = time.monotonic()
        step_ms, self._last_step = (now - self._last_step) * 1000, now
        late = step_ms > self.parts.target_latency_ms
        if late:
            self.parts.metrics.late_step()
        if output.retrieval and self.router is not None:
            self.router.retrieval_triggered()
        if output.text:
            if self.router is not None:
                self.router.moshi_words(output.text, output.written)
            await self.send(pack(Kind.TEXT, output.text.encode()))
            self.parts.events.publish(TranscriptEvent("assistant", output.text, False, self.conversation_id))
        if output.pcm is not None:
            loud = float(np.sqrt(np.mean(output.pcm**2))) > 10 ** (SPEAKING_DBFS / 20)
            self._speaking_frames = SPEAKING_HOLD_FRAMES if loud else max(0, self._speaking_frames - 1)
            if not self.muted:
                await self.send(pack(Kind.AUDIO, self._encode(output.pcm)))
                if self.transcription is not None:
                    self.transcription.front.played(output.pcm)
            self.parts.events.publish_audio(self.conversation_id, "assistant", output.pcm, muted=self.muted)
        await self._message(Metadata(
            self.session.frames_in if self.session else 0, round(step_ms, 1), late, output.written, self.muted,
            bool(self.transcription and self.transcription.front.in_speech)))

    def _encode(self, pcm: np.ndarray) -> bytes:
        if self._encoder is not None:
            return bytes(self._encoder.append_pcm(pcm))
        return pcm.astype("<f4").tobytes() if self.format == "f32" else float_to_s16(pcm)


async def duplex_ws(
    request: web.Request, parts: DuplexParts, track: Callable[[web.WebSocketResponse], None]
) -> web.WebSocketResponse:
    """`GET /api/duplex?format=opus|pcm|f32` upgraded to a WebSocket duplex session; `track`
    registers the socket so that server shutdown closes it."""
    audio_format = request.query.get("format", "opus")
    voice = request.query.get("voice") or None
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
    await ws.prepare(request)
    track(ws)
    connection = DuplexConnection(ws, parts, audio_format if audio_format in FORMATS else "opus", voice)
    problem = None
    if audio_format not in FORMATS:
        problem = f"format must be one of {', '.join(FORMATS)}, got {audio_format!r}"
    elif voice is not None and voice not in (voices := parts.store.moshi_voices()):
        problem = f"voice must be one of {', '.join(voices) or '(none: Moshi is not used)'}, got {voice!r}"
    if problem is not None:
        await connection.error("bad-request", problem)
        await ws.close()
        return ws
    try:
        await connection.run()
    except EngineBusyError as err:
        await connection.error("busy", str(err))
        await ws.close()
    except Exception as err:  # reported to this client, the server goes on
        _LOGGER.exception("Duplex session failed")
        await connection.error("internal-error", str(err))
        await ws.close()
    return ws

