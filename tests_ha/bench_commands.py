"""`script/bench commands`: spoken device commands through a real Home Assistant Assist pipeline
(the current release), scored by the entity states they leave behind.

Speech to text is real Whisper tiny.en (the server's CPU profile) hearing espeak-ng voices; the
LLM is a real small model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, a test and benchmark fixture,
through the server's embedded llama.cpp, one thread). Rows, in one run and on the same audio:

- Coda (Home Assistant's agent first, the LLM for the rest: the default), Whisper prompted with
  the home's device and area names through the Coda entry's home link;
- Home Assistant's own local agent, the Coda entry unloaded: Home Assistant alone with a Whisper
  server;
- Coda with local first off (every turn to the LLM).

Per row: device commands correct / total, questions and impossible requests answered right /
total (scored apart: no device may change, and an honest "I can't" is right), the median time
from the transcript to the answer per route, what the user must never hear (JSON, "Unable to get
response", "server cannot be reached"), and the LLM's prompt tokens and prompt-cache hits.
`CODA_BENCH_COMMANDS=N` runs the first N commands and questions only. Not collected by the test
suite (tests_ha/test_small_model.py is its smoke run)."""

from __future__ import annotations

import asyncio
import os
import statistics
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant

from tests.speech import make_speech

from .command_corpus import COMMANDS, QUESTIONS, Command, Question
from .command_home import SETTLE_SECONDS, at_rest, bad_speech, pipeline, set_states, setup_home, snapshot, turn, until
from .common import setup_coda, wyoming_engines

CODA, LOCAL = "conversation.coda_voice", "conversation.home_assistant"
LIMIT = int(os.environ.get("CODA_BENCH_COMMANDS", "0")) or None
CODA_ROW = "Coda (local first)"
LOCAL_ROW = "Home Assistant's local agent"
LINK_SECONDS = 3.0  # for a reloaded entry's home link to hand the server the home's words


def _routes(server: Any) -> dict[str, int]:
    _, analytics = server.http_get("/api/analytics", server.token)
    return dict((analytics or {}).get("routes") or {})


def _prompt(server: Any) -> dict[str, Any]:
    _, analytics = server.http_get("/api/analytics", server.token)
    return dict(((analytics or {}).get("llm") or {}).get("prompt") or {})


async def _row(hass: HomeAssistant, pipeline_id: str, server: Any, wavs: dict[str, Path],
               items: list[Command | Question]) -> list[dict[str, Any]]:
    results = []
    for item in items:
        if isinstance(item, Command):
            await set_states(hass, item.before)
        else:
            await at_rest(hass)
        before, routes = snapshot(hass), _routes(server)
        result = await turn(hass, pipeline_id, wavs[item.text])
        if isinstance(item, Command):
            covers = any(e.startswith("cover.") for e in item.after)
            result["correct"] = await until(hass, item.after, SETTLE_SECONDS if covers else 1.5)
        else:
            answer = result["answer"].lower()
            result["correct"] = snapshot(hass) == before and bad_speech(result["answer"]) is None and bool(
                answer.strip()) and (not item.answer_has or any(word in answer for word in item.answer_has))
        # the server counts an LLM turn as it starts; a local one is noted in the background
        result["route"] = "llm" if _routes(server).get("llm", 0) > routes.get("llm", 0) else "local"
        result["bad"] = bad_speech(result["answer"])
        result["text"] = item.text
        results.append(result)
        print(f"    {'ok ' if result['correct'] else 'BAD'} {result['route']:<6} {result['seconds']:6.2f}s "
              f"{item.text!r} heard {result['transcript']!r} -> {result['answer'][:90]!r}", flush=True)
    return results


async def test_spoken_commands(hass: HomeAssistant, coda_server_factory: Any, cpu_profile_args: list[str],
                               small_llm: Path, tmp_path: Path) -> None:
    hass.config.config_dir = str(tmp_path)
    await setup_home(hass)
    config = tmp_path / "coda.yaml"
    config.write_text("voice_processing:\n  external_llm:\n    threads: 1\n    context_size: 8192\n    temperature: 0\n")
    server = coda_server_factory(*cpu_profile_args, "--llm-provider", "llamacpp", "--llm-model", str(small_llm),
                                 "--config", str(config))
    commands, questions = COMMANDS[:LIMIT], QUESTIONS[:LIMIT]
    wavs = {item.text: make_speech(tmp_path / f"c{i}.wav", item.text, silence_after=0.5, voice=item.voice,
                                   speed=item.speed) for i, item in enumerate([*commands, *questions])}
    entry = await setup_coda(hass, server)
    engines = await wyoming_engines(hass, server.port)
    coda = await pipeline(hass, engines, CODA, "coda")
    local = await pipeline(hass, engines, LOCAL, "local")
    rows: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    prompts: dict[str, dict[str, Any]] = {}
    for label, pipeline_id, local_first in ((CODA_ROW, coda, True), (LOCAL_ROW, local, True),
                                            ("Coda, local first off", coda, False)):
        (agent,) = entry.subentries.values()
        if agent.data.get("local_first") != local_first:
            hass.config_entries.async_update_subentry(entry, agent, data={**agent.data, "local_first": local_first})
            await hass.async_block_till_done()
        if label == LOCAL_ROW:  # Home Assistant alone: no Coda entry, so Whisper hears without the home's words
            assert await hass.config_entries.async_unload(entry.entry_id)
        print(f"\n  {label}", flush=True)
        start_prompt = _prompt(server)
        rows[label] = (await _row(hass, pipeline_id, server, wavs, list(commands)),
                       await _row(hass, pipeline_id, server, wavs, list(questions)))
        prompts[label] = _prompt_delta(start_prompt, _prompt(server))
        if label == LOCAL_ROW:
            assert await hass.config_entries.async_setup(entry.entry_id)
            await asyncio.sleep(LINK_SECONDS)  # the entry's home link gives the server the home's words again
    _report(rows, prompts)


def _prompt_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    turns = after.get("turns", 0) - before.get("turns", 0)
    tokens = after.get("tokens", 0) - before.get("tokens", 0)
    cached = after.get("cached_tokens", 0) - before.get("cached_tokens", 0)
    return {"turns": turns, "mean_tokens": tokens / turns if turns else 0, "cache_hit": cached / tokens if tokens else 0}


def _median(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.0f}" if values else f"{'-':>8}"


def _report(rows: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]],
            prompts: dict[str, dict[str, Any]]) -> None:
    print("\n\nSpoken commands through Home Assistant (Whisper tiny.en, Qwen2.5-0.5B on 1 thread), "
          "transcript -> answer, median ms")
    print(f"  {'':<30} {'commands':>9} {'questions':>9} {'local':>8} {'llm':>8} {'never':>6} "
          f"{'prompt tok':>10} {'cache':>6}")
    for label, (commands, questions) in rows.items():
        right = sum(r["correct"] for r in commands)
        answered = sum(r["correct"] for r in questions)
        everything = commands + questions
        local = [r["seconds"] for r in everything if r["route"] == "local"]
        llm = [r["seconds"] for r in everything if r["route"] == "llm"]
        never = sum(r["bad"] is not None for r in everything)
        prompt = prompts[label]
        print(f"  {label:<30} {right:>4}/{len(commands):<4} {answered:>4}/{len(questions):<4} {_median(local)} "
              f"{_median(llm)} {never:>6} {prompt['mean_tokens']:>10.0f} {prompt['cache_hit']:>6.0%}")
    coda, ha = rows[CODA_ROW][0], rows[LOCAL_ROW][0]
    points = 100 * (sum(r["correct"] for r in coda) - sum(r["correct"] for r in ha)) / max(1, len(coda))
    print(f"\n  Coda - Home Assistant's agent: {points:+.0f} points (goal >= +20; Coda goal >= 90 %)")
    same = [(c["seconds"], h["seconds"]) for c, h in zip(coda, ha, strict=True) if c["route"] == "local"]
    if same:
        extra = statistics.median(c - h for c, h in same) * 1000
        print(f"  commands Coda handled locally: {extra:+.0f} ms against Home Assistant's agent (goal <= 50)")
    failed = [f"{r['text']!r} (heard {r['transcript']!r}) -> {r['answer'][:80]!r}" for r in coda if not r["correct"]]
    print("  what Coda got wrong:\n    " + "\n    ".join(failed or ["nothing"]))
