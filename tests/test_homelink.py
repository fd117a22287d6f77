"""The home link (`/api/home`) against a real server process with a duplex session: typed words
go to the LLM, whose tool calls run through the linked Home Assistant; with none linked the
LLM is told that home control is not connected.

The link's client here is a STAND-IN for the Coda integration that answers from a script; the
integration itself, inside a real Home Assistant, is tested in tests_ha/test_duplex_tools.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.ollama_double import OllamaDouble, Reply
from tests.serverproc import ServerProcess
from tests.test_duplex import CONTROL, HANDSHAKE

LIGHT_TOOL = {"type": "function", "function": {
    "name": "HassTurnOn", "description": "Turns on a device",
    "parameters": {"type": "object", "properties": {"name": {"type": "string"}}}}}
HOME_PROMPT = "Exposed entities: Bed Light (light.bed_light)"


class HomeStandIn:
    """Answers the server's context requests and tool calls as the Coda integration would."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.calls: list[dict[str, Any]] = []
        self.drop_on_call = False  # leave in the middle of a tool call
        self.local: str | None = None  # Home Assistant's own agent handles the next utterance, saying this
        self.asked_locally: list[str] = []

    async def serve(self) -> None:
        async for message in self.ws:
            request = json.loads(message.data)
            if request["type"] == "local":
                self.asked_locally.append(request["text"])
                speech, self.local = self.local, None
                await self.ws.send_json({"type": "local", "id": request["id"], **({"speech": speech} if speech else {})})
            elif request["type"] == "vocabulary":
                await self.ws.send_json({"type": "vocabulary", "id": request["id"], "names": ["Bed Light"],
                                         "areas": ["Bedroom"]})
            elif request["type"] == "context":
                await self.ws.send_json({"type": "context", "id": request["id"], "tools": [LIGHT_TOOL],
                                         "prompt": HOME_PROMPT})
            elif request["type"] == "tool_call":
                self.calls.append(request)
                if self.drop_on_call:
                    await self.ws.close()
                    return
                await self.ws.send_json({"type": "tool_call", "id": request["id"],
                                         "result": {"success": [request["arguments"]["name"]]}})


@asynccontextmanager
async def duplex(http: aiohttp.ClientSession, server: ServerProcess) -> AsyncIterator[tuple[Any, dict]]:
    async with http.ws_connect(f"http://127.0.0.1:{server.http_port}/api/duplex?format=pcm") as ws:
        hello = await ws.receive_bytes(timeout=30)
        assert hello[0] == HANDSHAKE
        yield ws, json.loads(hello[1:])


async def typed_turn(ws: aiohttp.ClientWebSocketResponse, text: str) -> list[dict]:
    """Type `text` into the session; the control events until the LLM's answer is done."""
    await ws.send_bytes(bytes([CONTROL]) + json.dumps({"action": "text", "text": text}).encode())
    events: list[dict] = []
    while not events or events[-1].get("event") != "llm_done":
        message = await ws.receive_bytes(timeout=30)
        if message[0] == CONTROL:
            events.append(json.loads(message[1:]))
    return events


def offered(request: dict) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools") or []}


async def test_duplex_tools_run_in_the_linked_home(start_server, ollama: OllamaDouble) -> None:
    server = start_server("--duplex", "--llm-url", ollama.url)
    async with server.session() as http:
        url = f"http://127.0.0.1:{server.http_port}/api/home"
        async with http.ws_connect(url) as anonymous:  # no hello: refused
            await anonymous.send_json({"type": "context"})
            refusal = await anonymous.receive_json(timeout=10)
            assert refusal["type"] == "error" and "hello" in refusal["text"]
        async with http.ws_connect(url) as link_ws:
            await link_ws.send_json({"type": "hello", "name": "Home", "entry_id": "e1"})
            assert await link_ws.receive_json(timeout=10) == {"type": "welcome", "duplex": True}
            home = HomeStandIn(link_ws)
            serving = asyncio.create_task(home.serve())
            async with duplex(http, server) as (ws, handshake):
                assert handshake["home"] == "Home"
                home.local = "Turned on the light."  # local first: Home Assistant's agent handles it
                events = await typed_turn(ws, "turn on the porch light")
                assert [e["event"] for e in events] == ["llm_done"] and events[0]["text"] == "Turned on the light."
                assert home.asked_locally == ["turn on the porch light"] and not ollama.requests
                ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light"})]),
                                 Reply(text="The bed light is on.")]
                events = await typed_turn(ws, "turn on the bed light")
                assert [e["event"] for e in events] == ["llm_turn", "tool_call", "tool_result", "llm_done"]
                assert events[0]["home"] == "Home" and events[2]["error"] is None
                assert events[2]["result"] == {"success": ["Bed Light"]}
                assert events[-1]["text"] == "The bed light is on."
                assert [(c["name"], c["arguments"]) for c in home.calls] == [("HassTurnOn", {"name": "Bed Light"})]
                assert home.calls[0]["call_id"]  # the id the LLM history has
                first = ollama.requests[0]
                assert {"HassTurnOn", "get_current_time"} <= offered(first)  # Home Assistant's and the server's
                assert HOME_PROMPT in first["messages"][0]["content"]

                home.drop_on_call = True  # Home Assistant goes away during the call: the turn still ends
                ollama.script = [Reply(tool_calls=[("HassTurnOn", {"name": "Bed Light"})]),
                                 Reply(text="I could not reach the house.")]
                events = await typed_turn(ws, "turn on the bed light again")
                assert "disconnected" in events[2]["error"] and events[-1]["error"] is None
                await asyncio.wait_for(serving, 10)

                ollama.requests.clear()  # no Home Assistant linked now: said so, server tools only
                ollama.script = [Reply(text="Home control is not connected.")]
                events = await typed_turn(ws, "turn off the bed light")
                assert events[0]["home"] is None
                request = ollama.requests[0]
                assert "HassTurnOn" not in offered(request) and "get_current_time" in offered(request)
                assert "not connected" in request["messages"][0]["content"]
                # a server timer started in the session rings in it (Moshi says so), even with
                # Home Assistant's tools there: a talk-page session has no satellite to ring on
                ollama.script = [Reply(tool_calls=[("start_timer", {"name": "tea", "seconds": 1})]),
                                 Reply(text="Your tea timer is running.")]
                events = await typed_turn(ws, "set a one second tea timer")
                assert events[1]["name"] == "start_timer" and events[2]["error"] is None
                while (message := await ws.receive_bytes(timeout=10))[0] != CONTROL:
                    pass
                assert json.loads(message[1:]) == {"event": "timer", "name": "tea"}
                await ws.send_bytes(bytes([CONTROL]) + json.dumps({"action": "text", "text": " "}).encode())
                error = await ws.receive_bytes(timeout=10)
                assert b"non-empty" in error


async def test_a_home_that_lends_no_tools_still_gives_its_words(start_server, ollama: OllamaDouble) -> None:
    """With talk-page control off the integration still links (`tools: false`): the server asks
    for its words, and duplex sessions get no home."""
    server = start_server("--duplex", "--llm-url", ollama.url)
    async with server.session() as http, http.ws_connect(f"http://127.0.0.1:{server.http_port}/api/home") as link_ws:
        await link_ws.send_json({"type": "hello", "name": "Home", "entry_id": "e1", "tools": False})
        assert await link_ws.receive_json(timeout=10) == {"type": "welcome", "duplex": False}
        assert (await link_ws.receive_json(timeout=10))["type"] == "vocabulary"
        async with duplex(http, server) as (_ws, handshake):
            assert handshake["home"] is None
