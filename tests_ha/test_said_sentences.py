"""Spoken commands the CPU profile's Whisper (real tiny.en) mishears even with the home's words,
through a real Assist pipeline and the real Home Assistant agent: local first asks the server to
read the home's own command sentences against the audio, and the one the audio supports is
carried out with no LLM turn; a request for a device the home lacks changes nothing and goes to
the LLM (the Ollama double)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant

from tests.speech import make_speech

from .command_home import pipeline, set_states, setup_home, snapshot, turn, until
from .common import setup_coda, wyoming_engines

AGENT = "conversation.coda_voice"
# (words, espeak voice and speed, state before, state after): each misheard by tiny.en here
MISHEARD = (
    ("make the kitchen lights blue", "en-us", 160, {"light.kitchen_lights": "on"},
     {"light.kitchen_lights": {"hue": 240}}),
    ("switch the AC off", "en-us+m4", 185, {"switch.ac": "on"}, {"switch.ac": "off"}),
)


async def test_a_misheard_command_is_read_again_against_its_audio(
    hass: HomeAssistant, coda_server_factory: Any, cpu_profile_args: list[str], ollama: Any, tmp_path: Path,
) -> None:
    from tests.ollama_double import Reply

    hass.config.config_dir = str(tmp_path)
    await setup_home(hass)
    server = coda_server_factory(*cpu_profile_args)
    await setup_coda(hass, server)
    coda = await pipeline(hass, await wyoming_engines(hass, server.port), AGENT, "coda")
    for i, (words, voice, speed, before, after) in enumerate(MISHEARD):
        await set_states(hass, before)
        result = await turn(hass, coda, make_speech(tmp_path / f"c{i}.wav", words, silence_after=0.5, voice=voice,
                                                    speed=speed))
        assert result["transcript"].lower().strip(".!? ") != words.lower(), "heard right: nothing to show"
        assert await until(hass, after, 1.5), result
    assert ollama.requests == []  # all local

    ollama.script = [Reply(text="There is no sauna in this home.")]
    before = snapshot(hass)
    result = await turn(hass, coda, make_speech(tmp_path / "sauna.wav", "turn on the sauna", silence_after=0.5))
    assert snapshot(hass) == before and result["answer"] == "There is no sauna in this home.", result
