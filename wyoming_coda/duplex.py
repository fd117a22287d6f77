"""Full-duplex Moshi sessions over a WebSocket (`/api/duplex` on the HTTP side port).

Binary messages, one kind byte then the payload (the layout of Kyutai's own server, with JSON
where a structure is needed); see docs/duplex.md:

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
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import sphn
from aiohttp import WSMsgType, web

from .audio import Framer, float_to_s16
from .moshihybrid import DuplexHybrid
from .speech import TextPiece, Transcription

if TYPE_CHECKING:
    from .engines.moshi import MoshiOutput, MoshiSession
    from .manager import VoiceManager

_LOGGER = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
HANDSHAKE, AUDIO, TEXT, CONTROL, METADATA, ERROR, PING, USER_TEXT = range(8)
MAX_MESSAGE = 1 << 20
SPEAKING_DBFS = -45.0  # an output frame louder than this means the assistant is talking
SPEAKING_HOLD_FRAMES = 4  # ... and still counts as talking for 320 ms after
FRAME = 1920  # 80 ms at 24 kHz, Mimi's frame
FORMATS = ("opus", "pcm", "f32")


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + payload


def _json(kind: int, data: dict[str, Any]) -> bytes:
    return _frame(kind, json.dumps(data).encode())


class DuplexConnection:
    """One WebSocket client talking with Moshi."""

    def __init__(
        self, ws: web.WebSocketResponse, manager: VoiceManager, audio_format: str, voice: str | None = None
    ) -> None:
        self.ws = ws
        self.manager = manager
        self.format = audio_format
        self.voice = voice
        self.session: MoshiSession | None = None
        self.transcription: Transcription | None = None
        self.conversation_id = ""
        self._decoder = sphn.OpusStreamReader(24000) if audio_format == "opus" else None
        self._encoder = sphn.OpusStreamWriter(24000) if audio_format == "opus" else None
        self._framer = Framer(FRAME)
        self.muted = False  # the user talked over the assistant: its audio is held back
        self.hybrid: DuplexHybrid | None = None
        self._utterance_end: asyncio.Task[None] | None = None
        self._speaking_frames = 0
        self._last_step = time.monotonic()

    async def send(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionResetError):
            await self.ws.send_bytes(data)

    async def error(self, code: str, text: str) -> None:
        await self.send(_json(ERROR, {"code": code, "text": text}))

    async def run(self) -> None:
        self.session = await self.manager.open_duplex(self.voice)
        voices = self.manager.store.moshi_voices()
        self.conversation_id = await self.manager.start_conversation(user_id="duplex")
        await self.send(_json(HANDSHAKE, {
            "version": PROTOCOL_VERSION, "sample_rate": 24000, "frame_size": self.session.engine.frame_size,
            "format": self.format, "session": self.conversation_id, "voice": self.voice or voices[0], "voices": voices,
            "home": home.name if (home := self.manager.homes.for_duplex()) else None,
        }))
        self.transcription = await self.manager.open_transcription(None, duplex=True)
        self.hybrid = DuplexHybrid(self.manager, self.session, self.conversation_id, self._notify,
                                   catch_up=self.transcription.stream.engine.delay_seconds)
        stop_timers = self.manager.on_timer(self.conversation_id, self.hybrid.timer_rang)
        tasks = [asyncio.create_task(self._write(self.session), name="duplex writer"),
                 asyncio.create_task(self._transcribe(self.transcription), name="duplex user transcript")]
        self.manager.metrics.connection("duplex", +1)
        try:
            await self._read()
        finally:
            self.manager.metrics.connection("duplex", -1)
            stop_timers()
            if self._utterance_end is not None:
                self._utterance_end.cancel()
            await self.hybrid.close()
            await self.session.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.transcription.close()
            await self.manager.end_conversation(self.conversation_id)

    async def _transcribe(self, transcription: Transcription) -> None:
        """The user's side of the live transcript."""
        async for result in transcription.results():
            if isinstance(result, TextPiece):
                if self.hybrid is not None:
                    self.hybrid.user_words(result.text)
                await self.send(_frame(USER_TEXT, result.text.encode()))
                self.manager.events.publish("transcript", conversation_id=self.conversation_id, speaker="user",
                                            text=result.text, final=False)

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
            if kind == AUDIO:
                await self._audio(payload)
            elif kind == PING:
                await self.send(data)
            elif kind == CONTROL:
                if await self._control(payload):
                    return
            else:
                await self.error("malformed-message", f"unexpected message kind {kind}")

    async def _control(self, payload: bytes) -> bool:
        """Handle a control message; True when the client ends the session."""
        try:
            control = json.loads(payload)
            action = control.get("action")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            await self.error("malformed-message", "control payload must be a JSON object")
            return False
        if action == "close":
            await self.ws.close()
            return True
        if action == "text":
            text = control.get("text")
            if not isinstance(text, str) or not text.strip():
                await self.error("malformed-message", "a text control needs a non-empty \"text\"")
            elif self.hybrid is not None:
                await self.hybrid.ask_llm(text.strip())
            return False
        await self.error("malformed-message", f"unknown control action {action!r}")
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
        for frame in self._framer.push(samples):
            await self._frame(frame)

    async def _frame(self, frame: np.ndarray) -> None:
        """One 80 ms user frame through the transcription's front end (echo of Moshi's own
        voice, noise and level at 16 kHz, VAD), then to Moshi and the user transcript.

        The front end resamples frame by frame (1920 ↔ 1280 samples exactly), so nothing waits
        in a streaming resampler: each frame reaches Moshi as soon as it is complete."""
        assert self.session is not None and self.transcription is not None
        heard = self.transcription.feed(float_to_s16(frame), 24000, 2, 1)
        self.session.feed(heard.audio)
        for activity in heard.activity:
            await self._user_voice(activity.started)

    async def _notify(self, event: dict[str, Any]) -> None:
        await self.send(_json(CONTROL, event))

    async def _end_utterance_later(self, delay: float) -> None:
        """Route the utterance once the STT has caught up with its last words."""
        await asyncio.sleep(delay)
        if self.hybrid is not None:
            await self.hybrid.end_of_utterance()

    async def _user_voice(self, started: bool) -> None:
        if self._utterance_end is not None and not self._utterance_end.done():
            self._utterance_end.cancel()  # the user goes on: the utterance is not over
        if started and self.hybrid is not None and self.hybrid.answering:
            await self.hybrid.interrupt()
        elif not started and self.transcription is not None:
            delay = self.transcription.stream.engine.delay_seconds
            self._utterance_end = asyncio.create_task(self._end_utterance_later(delay), name="duplex utterance end")
        if started and self._speaking_frames > 0 and not self.muted:
            self.muted = True  # from the next frame on, nothing of the assistant goes out
            self.manager.metrics.interruption()
            self.manager.events.publish("interruption", conversation_id=self.conversation_id)
            await self.send(_json(CONTROL, {"event": "interruption"}))
        elif not started and self.muted:
            self.muted = False
            await self.send(_json(CONTROL, {"event": "resume"}))

    async def _write(self, session: MoshiSession) -> None:
        async for output in session.outputs():
            await self._output(output)

    async def _output(self, output: MoshiOutput) -> None:
        now = time.monotonic()
        step_ms, self._last_step = (now - self._last_step) * 1000, now
        late = step_ms > self.manager.config.moshi.target_latency_ms
        if late:
            self.manager.metrics.late_step()
        if output.retrieval and self.hybrid is not None:
            self.hybrid.retrieval_triggered()
        if output.text:
            if self.hybrid is not None:
                self.hybrid.moshi_words(output.text, output.written)
            await self.send(_frame(TEXT, output.text.encode()))
            self.manager.events.publish("transcript", conversation_id=self.conversation_id, speaker="assistant",
                                        text=output.text, final=False)
        if output.pcm is not None:
            loud = float(np.sqrt(np.mean(output.pcm**2))) > 10 ** (SPEAKING_DBFS / 20)
            self._speaking_frames = SPEAKING_HOLD_FRAMES if loud else max(0, self._speaking_frames - 1)
            if not self.muted:
                await self.send(_frame(AUDIO, self._encode(output.pcm)))
                if self.transcription is not None:
                    self.transcription.front.played(output.pcm)
            self.manager.events.publish_audio(self.conversation_id, "assistant", output.pcm, muted=self.muted)
        await self.send(_json(METADATA, {
            "frame": self.session.frames_in if self.session else 0, "step_ms": round(step_ms, 1), "late": late,
            "written": output.written, "muted": self.muted,
            "user_speaking": bool(self.transcription and self.transcription.front.in_speech),
        }))

    def _encode(self, pcm: np.ndarray) -> bytes:
        if self._encoder is not None:
            return bytes(self._encoder.append_pcm(pcm))
        return pcm.astype("<f4").tobytes() if self.format == "f32" else float_to_s16(pcm)


async def duplex_ws(
    request: web.Request, manager: VoiceManager, track: Callable[[web.WebSocketResponse], None]
) -> web.WebSocketResponse:
    """`GET /api/duplex?format=opus|pcm|f32` upgraded to a WebSocket duplex session; `track`
    registers the socket so that server shutdown closes it."""
    audio_format = request.query.get("format", "opus")
    voice = request.query.get("voice") or None
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
    await ws.prepare(request)
    track(ws)
    connection = DuplexConnection(ws, manager, audio_format if audio_format in FORMATS else "opus", voice)
    problem = None
    if audio_format not in FORMATS:
        problem = f"format must be one of {', '.join(FORMATS)}, got {audio_format!r}"
    elif voice is not None and voice not in (voices := manager.store.moshi_voices()):
        problem = f"voice must be one of {', '.join(voices) or '(none: Moshi is not used)'}, got {voice!r}"
    if problem is not None:
        await connection.error("bad-request", problem)
        await ws.close()
        return ws
    try:
        await connection.run()
    except Exception as err:  # reported to this client, the server goes on
        _LOGGER.exception("Duplex session failed")
        await connection.error("internal-error", str(err))
        await ws.close()
    return ws

