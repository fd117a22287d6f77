"""The turn's language: a French turn is answered in French with a French voice, without the
user switching anything — from the client's language where it sends one, else from the words —
and a synthesis that names no voice speaks with the voice of its text's language."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from tests.ollama_double import OllamaDouble, Reply
from tests.serverproc import ServerProcess, exchange
from tests.test_handle import handle_turn

FRENCH_VOICE = "cml-tts/fr/2465_1943_000152-0002.wav"  # the default tts.language_voices entry
DEFAULT_VOICE = "expresso/ex03-ex01_happy_001_channel1_334s.wav"


async def test_a_french_turn_is_answered_in_french(start_server, ollama: OllamaDouble) -> None:
    server = start_server("--llm-url", ollama.url)
    ollama.script = [Reply(text="La lumière de la cuisine est allumée.")]
    events = await handle_turn(server, "allume la lumière de la cuisine s'il te plaît")
    context = events[-1].data["context"]
    assert (context["language"], context["voice"]) == ("fr", FRENCH_VOICE)
    assert "Reply in the user's language (fr)." in ollama.requests[-1]["messages"][0]["content"]

    events = await handle_turn(server, "turn on the kitchen light")
    assert (events[-1].data["context"]["language"], events[-1].data["context"]["voice"]) == ("en", DEFAULT_VOICE)

    # the client's language (Home Assistant: the pipeline's) wins over the words
    events = await handle_turn(server, "allume la lumière", language="en")
    assert events[-1].data["context"]["language"] == "en"


async def _subscribed(http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                      server: ServerProcess) -> None:
    """Wait until the events socket receives events: erasing an unknown user's memory publishes
    one (repeated until it arrives, since the server subscribes the socket after its handshake)."""
    async with asyncio.timeout(10):
        while True:
            async with http.delete(f"http://127.0.0.1:{server.http_port}/api/memory/events-probe"):
                pass
            with contextlib.suppress(TimeoutError):
                if json.loads((await ws.receive(timeout=0.5)).data)["event_type"] == "memory_forgotten":
                    return


async def _syntheses(server: ServerProcess, requests: list[list[Any]]) -> list[dict]:
    """The `synthesis` events (voice and language of each TTS row) of these requests."""
    async with server.session() as http, http.ws_connect(
            f"http://127.0.0.1:{server.http_port}/api/events?metrics_interval=0") as ws:
        await _subscribed(http, ws, server)
        for events in requests:
            until = "synthesize-stopped" if events[0].type == "synthesize-start" else "audio-stop"
            await exchange(server, events, until=until)
        found: list[dict] = []
        while len(found) < len(requests):
            message = json.loads((await ws.receive(timeout=10)).data)
            if message["event_type"] == "synthesis":
                found.append(message["data"])
    return found


async def test_synthesis_speaks_with_the_voice_of_its_texts_language(server: ServerProcess) -> None:
    french = "Bonjour, la lumière de la cuisine est allumée."
    streamed = [SynthesizeStart().event(), SynthesizeChunk(text="Bonjour, la lumière de ").event(),
                SynthesizeChunk(text="la cuisine est allumée.").event(), Synthesize(text=french).event(),
                SynthesizeStop().event()]
    found = await _syntheses(server, [
        [Synthesize(text=french).event()],
        [Synthesize(text="Hello, the kitchen light is on.").event()],
        streamed,
        [Synthesize(text=french, voice=SynthesizeVoice(name="vctk/p225_023.wav")).event()],
    ])
    assert found == [{"voice": FRENCH_VOICE, "language": "fr"}, {"voice": DEFAULT_VOICE, "language": "en"},
                     {"voice": FRENCH_VOICE, "language": "fr"}, {"voice": "vctk/p225_023.wav", "language": None}]


async def test_voices_are_offered_for_their_language(server: ServerProcess) -> None:
    from wyoming.info import Describe

    info = await exchange(server, [Describe().event()], until="info")
    languages = {voice["name"]: voice["languages"] for voice in info[-1].data["tts"][0]["voices"]}
    assert languages[FRENCH_VOICE] == ["fr"] and languages[DEFAULT_VOICE] == ["en", "fr"]
