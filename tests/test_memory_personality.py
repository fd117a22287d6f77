"""Memory (SQLite FTS5), personality adaptation and the adaptive router."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wyoming_coda.personality import Personality, PersonalityStore
from wyoming_coda.turn.memory import MemoryStore, extract_facts
from wyoming_coda.turn.routing import route_turn


def test_fact_extraction() -> None:
    assert extract_facts("Hi! My name is Alice and I like jazz music.") == [
        ("fact", "The user's name is Alice."), ("preference", "The user likes jazz music.")]
    assert extract_facts("remember that the spare key is under the mat") == [
        ("fact", "The spare key is under the mat")]
    assert extract_facts("turn on the kitchen light") == []
    assert extract_facts("My favourite colour is green") == [("fact", "The user's favourite colour is green.")]
    for command in ("my room is cold, turn up the heating", "my phone is ringing, pause the music",
                    "my alarm is too loud", "my coffee is ready", "my battery is low", "my laundry is done",
                    "my show is starting, dim the lights", "I'd like the lights dimmer", "remind me at six"):
        assert extract_facts(command) == [], command  # what a command mentions is not a fact to keep


async def test_memory_retrieval_forget_export(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "memory.db")
    await store.add_turn("u1", "c1", "remember that the wifi password is tulip", "Noted.")
    await store.add_turn("u1", "c1", "I prefer tea in the morning", "Okay.")
    await store.add_turn("u1", "c1", "My car is a red Volvo", "Nice.")
    await store.add_turn("u2", "c2", "My name is Bob", "Hi Bob.")
    found = await store.relevant("u1", "what is the wifi password", 2)
    assert found[0].text == "The wifi password is tulip"
    assert [m.text for m in found][1] == "The user prefers tea in the morning."  # preferences fill up
    assert [m.text for m in await store.relevant("u1", "where is my car", 1)] == ["The user's car is a red Volvo."]
    assert not any("Bob" in m.text for m in await store.relevant("u1", "name Bob", 5))
    exported = await store.export("u1")
    assert len(exported["facts"]) == 3 and len(exported["turns"]) == 6
    json.dumps(exported)
    assert await store.forget("u1", exported["facts"][0]["id"]) == 1
    assert all("wifi" not in m.text for m in await store.relevant("u1", "wifi password", 5))
    assert await store.forget("u1") == 2
    assert (await store.export("u1"))["turns"] == []
    assert [m.text for m in await store.relevant("u2", "my name", 1)] == ["The user's name is Bob."]
    await store.close()


def test_personality_adapts_and_persists(tmp_path: Path) -> None:
    default = Personality(verbosity="normal")
    store = PersonalityStore(tmp_path / "p.json", default)
    assert store.adapt("u1", "turn on the light") is None
    assert store.adapt("u1", "please be shorter").verbosity == "brief"
    assert store.adapt("u1", "can you speak more formally").tone == "formal"
    assert store.adapt("u1", "keep it brief") is None  # already as brief as it goes
    again = PersonalityStore(tmp_path / "p.json", default)
    assert again.get("u1") == Personality(verbosity="brief", tone="formal")
    assert again.get("u2") == default
    assert "one or two short sentences" in again.get("u1").prompt()


def test_adaptive_routes() -> None:
    assert route_turn("turn on the kitchen light", True, False).name == "llm"
    assert route_turn("hi there", True, False).name == "fast"
    assert route_turn("thanks a lot", True, True).name == "fast"
    assert route_turn("why is the sky blue and what makes sunsets red", True, False).name == "llm"
    assert route_turn("set a timer for ten minutes", True, True).name == "llm"
    assert route_turn("hello", False, False).name == "fallback"
    # with Moshi loaded, chit-chat is Moshi's; saturated speech engines still take the fast path
    assert route_turn("hi there", True, False, moshi=True).name == "moshi"
    assert route_turn("thanks a lot", True, True, moshi=True).name == "fast"
    assert route_turn("turn on the kitchen light", True, False, moshi=True).name == "llm"


def test_integration_offers_the_server_vocabulary() -> None:
    """The Home Assistant integration (which cannot import the server) lists the same choices."""
    import re

    from wyoming_coda.personality import TONES, VERBOSITY

    const = (Path(__file__).resolve().parents[1] / "custom_components" / "coda" / "const.py").read_text()

    def offered(name: str) -> list[str]:
        match = re.search(rf"^{name}: Final = \((.*)\)$", const, re.MULTILINE)
        assert match is not None, name
        return re.findall(r'"([^"]+)"', match.group(1))

    assert offered("VERBOSITY_OPTIONS") == list(VERBOSITY) and offered("TONE_OPTIONS") == list(TONES)


ORDINARY_COMMANDS = [
    "leave the heating on longer", "help me relax", "turn on the kitchen light", "set a timer for ten minutes",
    "make the living room brighter", "dim the bedroom lights a bit", "play some relaxing music",
    "what's the weather like tomorrow", "lock the front door", "open the garage", "is the back door closed",
    "set the thermostat to twenty degrees", "keep the porch light on longer tonight", "run the dishwasher later",
    "turn the volume down, it's too loud", "the shower takes too long to heat up", "add milk to the shopping list",
    "start the vacuum in the hallway", "close the blinds in the office", "how long until the laundry is done",
    "make the coffee a bit stronger", "switch off everything downstairs", "be quiet", "what time is it",
    "play the news briefly", "tell me a short joke", "give me a brief summary of my calendar",
    "remind me to call mum", "turn the fan on low", "set the lights to a more relaxed scene",
    "the movie was too long", "speak to me about the weather",
]
INSTRUCTIONS = [
    ("please be shorter", "verbosity", "brief"), ("keep your answers short", "verbosity", "brief"),
    ("you're too wordy", "verbosity", "brief"), ("answer more briefly", "verbosity", "brief"),
    ("give me longer answers", "verbosity", "detailed"), ("be more detailed", "verbosity", "detailed"),
    ("speak more formally", "tone", "formal"), ("be more professional", "tone", "formal"),
    ("talk more casually", "tone", "casual"), ("be more playful", "tone", "playful"),
]


def test_ordinary_commands_never_change_the_personality(tmp_path: Path) -> None:
    store = PersonalityStore(tmp_path / "p.json", Personality(verbosity="normal", tone="friendly"))
    changed = [text for text in ORDINARY_COMMANDS if store.adapt("u", text) is not None]
    assert changed == [] and len(ORDINARY_COMMANDS) >= 30
    assert not (tmp_path / "p.json").exists()


def test_instructions_to_the_assistant_do(tmp_path: Path) -> None:
    for text, field, value in INSTRUCTIONS:
        start = Personality(verbosity="normal", tone="friendly")
        changed = start.adapt(text)
        assert changed is not None and getattr(changed, field) == value, text


def test_conversations_of_clients_that_never_say_goodbye_are_bounded() -> None:
    from wyoming_coda.events import EventBus
    from wyoming_coda.metrics import Metrics
    from wyoming_coda.turn.conversation import MAX_EXPIRING, Conversations

    conversations = Conversations(Metrics(), EventBus())
    kept = conversations.start("kept", "u", None, None)  # a session that ends itself: never evicted
    first = conversations.start("first", "u", None, 300.0)
    for n in range(MAX_EXPIRING + 5):
        conversations.start(f"c{n}", "u", None, 300.0)
    assert len(conversations) == MAX_EXPIRING + 1
    assert conversations.get(kept).id == "kept"
    with pytest.raises(KeyError):
        conversations.get(first)  # the least recently active went first


async def test_memory_routes_say_when_memory_is_off(start_server) -> None:
    """With memory off, Home Assistant's memory services get a clear answer, not an empty list."""
    server = start_server("--no-memory")
    status, body = server.http_fetch("/api/memory")
    assert status == 404 and b"memory is off on this server" in body
    assert server.http_fetch("/api/memory/household")[0] == 404
