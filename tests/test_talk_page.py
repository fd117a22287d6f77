"""The browser talk page in headless Chromium with a fake microphone fed from a WAV file: audio
frames flow both ways, both transcripts fill in, a latency readout appears. The screenshot is
kept in test-artifacts/talk-page.png."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.browser import Browser
from tests.serverproc import ROOT, ServerProcess
from tests.speech import make_speech

ARTIFACTS = ROOT / "test-artifacts"


async def test_talk_page_in_chromium(start_server, ollama, tmp_path: Path) -> None:
    from tests.ollama_double import Reply

    server: ServerProcess = start_server("--duplex", "--llm-url", ollama.url,
                                         "--moshi-voice", "kyutai/moshiko-pytorch-bf16")
    ollama.script = [Reply(text="It is noon.")]
    microphone = make_speech(tmp_path / "mic.wav", "hello moshi, turn on the kitchen light please",
                             rate=48000, silence_after=0.5)
    browser = Browser(microphone)
    try:
        await browser.open(f"http://127.0.0.1:{server.http_port}/?autostart=1&voice=moshiko&token={server.token}")
        stats = {}
        for _ in range(300):
            stats = await browser.evaluate("JSON.parse(JSON.stringify(window.codaStats || {}))") or {}
            if stats.get("received", 0) > 25 and stats.get("userText") and stats.get("moshiText"):
                break
            await asyncio.sleep(0.1)
        # a typed question: the LLM answers, Moshi says it (its monologue shows the LLM's words)
        await browser.evaluate('document.getElementById("question").value = "what time is it";'
                               'document.getElementById("typed").requestSubmit(); true')
        for _ in range(300):
            stats = await browser.evaluate("JSON.parse(JSON.stringify(window.codaStats || {}))") or {}
            if "".join(entry["text"] for entry in stats["entries"] if entry["who"] == "llm").strip():
                break
            await asyncio.sleep(0.1)
        ARTIFACTS.mkdir(exist_ok=True)
        await browser.screenshot(ARTIFACTS / "talk-page.png")
    finally:
        await browser.close()
    assert not stats.get("errors"), stats
    assert stats["sent"] > 25 and stats["received"] > 25  # 2 s of audio each way
    assert stats["moshiText"].strip() and stats["userText"].strip()
    assert stats["latencyMs"] is not None and 0 < stats["latencyMs"] < 2000
    assert (ARTIFACTS / "talk-page.png").stat().st_size > 5000
    speakers = {entry["who"] for entry in stats["entries"]}
    assert {"you", "moshi", "llm"} <= speakers  # the conversation log, as it happened
    assert {"who": "you", "text": "what time is it"} in [{k: e[k] for k in ("who", "text")} for e in stats["entries"]]
    assert ollama.requests[0]["messages"][-1]["content"] == "what time is it"
    assert stats["home"] is None  # no Home Assistant linked: the page says server tools only
    assert stats["voice"] == "moshiko" and stats["voices"] == ["moshika", "moshiko"]  # the voice picked
    assert stats["inDbfs"] is not None and stats["outDbfs"] is not None  # live levels


async def test_talk_page_over_https_asks_for_the_token_once(start_server, tmp_path: Path) -> None:
    """From another machine: HTTPS (self-signed here), and a server with a bearer token."""
    from tests.serverproc import free_port

    https_port = free_port()
    server: ServerProcess = start_server("--duplex", "--http-self-signed", "--https-port", str(https_port),
                                         "--http-token", "s3cret-token")
    microphone = make_speech(tmp_path / "mic.wav", "hello moshi", rate=48000, silence_after=0.5)
    browser = Browser(microphone, ignore_certificate_errors=True)
    browser.prompt_answer = "s3cret-token"
    try:
        await browser.open(f"https://127.0.0.1:{https_port}/?autostart=1")
        stats = {}
        for _ in range(300):
            stats = await browser.evaluate("JSON.parse(JSON.stringify(window.codaStats || {}))") or {}
            if stats.get("received", 0) > 10 or stats.get("errors"):
                break
            await asyncio.sleep(0.1)
        kept = await browser.evaluate("localStorage.getItem('codaToken')")
    finally:
        await browser.close()
    assert not stats.get("errors"), stats
    assert len(browser.prompts) == 1 and "access token" in browser.prompts[0]
    assert kept == "s3cret-token" and stats["received"] > 10  # the WebSocket got in with the token
    assert server.http_fetch("/api/analytics", token="")[0] == 401  # the plain side port still wants it too
