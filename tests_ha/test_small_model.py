"""The Coda agent with a real small LLM (Qwen2.5-Coder-0.5B-Instruct through the server's embedded
llama.cpp, one thread): a command Home Assistant's own agent handles at once, and one it cannot,
which the model carries out with Home Assistant's tools. The smoke run of `script/bench commands`
(same home, same corpus)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant

from .command_corpus import COMMANDS, Command
from .command_home import bad_speech, set_states, setup_home, until
from .common import setup_coda, wait_for

AGENT = "conversation.coda_voice"
# words Home Assistant's own sentences do not cover (on 2026.2 and 2026.10 alike): the LLM's turn
FOR_THE_LLM = Command("kill the kitchen lights", {"light.kitchen_lights": "on"}, {"light.kitchen_lights": "off"})


async def test_local_and_llm_commands_with_a_real_small_model(
    hass: HomeAssistant, coda_server_factory: Any, small_llm: Path, tmp_path: Path
) -> None:
    await setup_home(hass)
    config = tmp_path / "coda.yaml"
    config.write_text("voice_processing:\n  external_llm:\n    threads: 1\n    context_size: 8192\n    temperature: 0\n")
    server = coda_server_factory("--llm-provider", "llamacpp", "--llm-model", str(small_llm), "--config", str(config))
    await setup_coda(hass, server)

    def analytics() -> dict[str, Any]:
        return dict(server.http_get("/api/analytics", server.token)[1] or {})

    for command, route in ((COMMANDS[0], "local"), (FOR_THE_LLM, "llm")):
        text = command.text
        await set_states(hass, command.before)
        result = await conversation.async_converse(hass, text, None, Context(), language="en", agent_id=AGENT)
        speech = result.response.speech["plain"]["speech"]
        assert await until(hass, command.after, 1.5), f"{text!r} -> {speech!r}"
        assert speech and bad_speech(speech) is None, speech
        await wait_for(lambda route=route: analytics()["routes"].get(route) == 1)  # noted by the server
    prompt = analytics()["llm"]["prompt"]
    assert prompt["turns"] >= 1 and prompt["last_tokens"] > 200  # Home Assistant's prompt and tools, measured
