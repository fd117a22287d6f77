"""A small client of a running Coda Voice server, shared by the demo scripts: the Wyoming
services (asr, handle, tts) and the HTTP side port (analytics, events)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import aiohttp
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeVoice

from wyoming_coda.access import sign_request
from wyoming_coda.audio import AudioFormatError, read_wav_bytes, wav_bytes

DEFAULT_URI = "tcp://127.0.0.1:10300"
DEFAULT_HTTP_PORT = 10301
TIMEOUT = 30.0


class ServerUnreachableError(Exception):
    """The server did not answer."""


@dataclass
class Server:
    """Where the server listens: its Wyoming URI and its HTTP side port."""

    uri: str
    http_url: str
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"the server's Wyoming URI (default {DEFAULT_URI})")
    parser.add_argument("--http-url", help=f"the server's HTTP side port (default: the --uri host, port "
                                           f"{DEFAULT_HTTP_PORT})")
    parser.add_argument("--token", default=os.environ.get("CODA_TOKEN"),
                        help="the server's token (default: $CODA_TOKEN; the server keeps it in its data directory, "
                             "file http-token, unless it runs with --http-token)")


def server_from(args: argparse.Namespace) -> Server:
    host = urlparse(args.uri).hostname or "127.0.0.1"
    return Server(args.uri, args.http_url or f"http://{host}:{DEFAULT_HTTP_PORT}", args.token)


def run(main: Coroutine[Any, Any, int]) -> None:
    """Run a demo's main coroutine; an unreachable server is one clear line and exit code 2, an
    unreadable WAV file one line and exit code 1."""
    try:
        sys.exit(asyncio.run(main))
    except ServerUnreachableError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except AudioFormatError as err:
        print(f"error: the audio is not a readable WAV file ({err})", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


async def connect(server: Server) -> AsyncClient:
    client = AsyncClient.from_uri(server.uri)
    try:
        await asyncio.wait_for(client.connect(), 5)
    except (OSError, TimeoutError) as err:
        raise ServerUnreachableError(f"cannot reach the Coda Voice server at {server.uri} ({err or 'timeout'}); "
                                     "start it with script/run or pass --uri") from err
    return client


async def _read(client: AsyncClient) -> Event:
    event = await asyncio.wait_for(client.read_event(), TIMEOUT)
    if event is None:
        raise ServerUnreachableError("the server closed the connection")
    if event.type == "error":
        raise RuntimeError(f"server error {event.data.get('code')}: {event.data.get('text')}")
    return event


async def transcribe(server: Server, wav_data: bytes, language: str | None = None) -> tuple[str, float]:
    """(transcript, seconds from the end of the audio to the final transcript)."""
    pcm, rate, width, channels = read_wav_bytes(wav_data)
    client = await connect(server)
    try:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = rate * width * channels // 10  # 100 ms chunks
        for start in range(0, len(pcm), step):
            await client.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                                audio=pcm[start:start + step]).event())
        await client.write_event(AudioStop().event())
        stopped = time.monotonic()
        while not Transcript.is_type((event := await _read(client)).type):
            pass
        return Transcript.from_event(event).text, time.monotonic() - stopped
    finally:
        await client.disconnect()


@dataclass
class Answer:
    text: str = ""
    handled: bool = False
    first_text_s: float | None = None
    total_s: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    conversation_id: str | None = None


ToolRunner = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def converse(
    server: Server, text: str, context: dict[str, Any] | None = None, run_tool: ToolRunner | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Answer:
    """One turn on the `handle` service; tool calls the server asks for run in `run_tool`. With
    the server's token the request is signed, as the Coda integration signs it (a user's memory
    and personality; without it the server answers as to any Wyoming client)."""
    answer = Answer()
    client = await connect(server)
    start = time.monotonic()
    context = sign_request(server.token, text, context or {}) if server.token else dict(context or {})
    try:
        await client.write_event(Transcript(text=text, context=context).event())
        while True:
            event = await _read(client)
            if event.type == "handled-chunk":
                answer.first_text_s = answer.first_text_s or time.monotonic() - start
                if on_text:
                    on_text(event.data["text"])
            elif event.type == "coda-tool-call":
                call = event.data
                answer.tool_calls.append(call)
                try:
                    result = {"result": await run_tool(call["name"], call.get("arguments") or {})} if run_tool \
                        else {"error": "this client has no tools"}
                except Exception as err:  # noqa: BLE001 - any tool failure goes back to the server
                    result = {"error": str(err)}
                await client.write_event(Event("coda-tool-result", {"id": call["id"], **result}))
            elif event.type in ("handled", "not-handled"):
                answer.text = event.data.get("text") or ""
                answer.handled = event.type == "handled"
                answer.conversation_id = (event.data.get("context") or {}).get("conversation_id")
                answer.total_s = time.monotonic() - start
                return answer
    finally:
        await client.disconnect()


async def synthesize(server: Server, text: str, voice: str | None = None) -> tuple[bytes, float]:
    """(WAV bytes, seconds to the first audio)."""
    client = await connect(server)
    start = time.monotonic()
    first: float | None = None
    pcm = bytearray()
    rate = 24000
    try:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice) if voice else None).event())
        while (event := await _read(client)).type != "audio-stop":
            if event.type == "audio-chunk":
                first = first or time.monotonic() - start
                chunk = AudioChunk.from_event(event)
                rate = chunk.rate
                pcm += chunk.audio
        return wav_bytes(bytes(pcm), rate), first or 0.0
    finally:
        await client.disconnect()


async def http_json(server: Server, path: str) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession() as session, session.get(
            f"{server.http_url}{path}", headers=server.headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            if response.status == 401:
                raise ServerUnreachableError(f"{server.http_url} refused the token (pass --token)")
            return await response.json()
    except aiohttp.ClientError as err:
        raise ServerUnreachableError(f"cannot reach the server's HTTP port at {server.http_url} ({err}); "
                                     "pass --http-url") from err


async def events(server: Server, metrics_interval: float = 0) -> AsyncGenerator[dict[str, Any]]:
    """The server's event stream (`/api/events`)."""
    url = f"{server.http_url}/api/events?metrics_interval={metrics_interval:g}"
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=server.headers) as ws:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    yield message.json()
    except aiohttp.WSServerHandshakeError as err:
        raise ServerUnreachableError(f"{url}: HTTP {err.status} (pass --token?)") from err
    except aiohttp.ClientError as err:
        raise ServerUnreachableError(f"cannot reach the server's event stream at {url} ({err}); "
                                     "pass --http-url") from err
