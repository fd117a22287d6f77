"""The integration in a real Home Assistant: `hass` runs as its own process with its frontend,
headless Chromium shows it. The user step of the config flow, the entry added through Home
Assistant's REST flow API, a conversation through its REST API, then the device page with the
sensors. With CODA_SCREENSHOTS=<dir> the screenshots are written there (docs/images is made
so: `CODA_SCREENSHOTS=docs/images script/test-ha current test_screenshots.py`). Runs where
the environment has Chromium (the current release's)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize

from tests.browser import CHROMIUM, Browser
from tests.serverproc import free_port

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium in this environment")

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


class HomeAssistantProcess:
    """`hass` with a minimal configuration, our integration linked into its config dir."""

    def __init__(self, config_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_dir = config_dir
        (config_dir / "custom_components").mkdir(parents=True)
        (config_dir / "custom_components" / "coda").symlink_to(ROOT / "custom_components" / "coda")
        (config_dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: Home\n  unit_system: metric\n  time_zone: UTC\n  country: US\n"
            "  latitude: 52.37\n  longitude: 4.89\n  elevation: 0\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "frontend:\nconfig:\nonboarding:\nconversation:\nperson:\nsystem_log:\nlogger:\n  default: warning\n")
        self.log = open(config_dir / "hass.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homeassistant", "--config", str(config_dir), "--skip-pip"],
            stdout=self.log, stderr=subprocess.STDOUT)

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.config_dir / "hass.log").read_text()[-3000:]
            try:
                async with session.get(f"{self.url}/api/onboarding") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError((self.config_dir / "hass.log").read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def home_assistant(tmp_path: Path, socket_enabled: None) -> Iterator[HomeAssistantProcess]:
    instance = HomeAssistantProcess(tmp_path / "ha-config")
    yield instance
    instance.stop()


async def _onboard(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """Create the owner through onboarding and finish it; the owner's tokens."""
    client_id = f"{url}/"
    async with session.post(f"{url}/api/onboarding/users", json={
            "client_id": client_id, "name": "Demo", "username": "demo", "password": "demo-password",
            "language": "en"}) as response:
        assert response.status == 200, await response.text()
        code = (await response.json())["auth_code"]
    async with session.post(f"{url}/auth/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": client_id}) as response:
        tokens = await response.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for step, body in (("core_config", {}), ("analytics", {}),
                       ("integration", {"client_id": client_id, "redirect_uri": f"{url}/?auth_callback=1"})):
        async with session.post(f"{url}/api/onboarding/{step}", json=body, headers=headers) as response:
            assert response.status == 200, (step, await response.text())
    # onboarding adds a few default integrations (weather, radio); this page is about ours
    async with session.get(f"{url}/api/config/config_entries/entry", headers=headers) as response:
        for entry in await response.json():
            async with session.delete(f"{url}/api/config/config_entries/entry/{entry['entry_id']}", headers=headers):
                pass
    # keep the HTTP settings of configuration.yaml without the "confirm new HTTP settings" dialog
    async with session.ws_connect(f"{url}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": tokens["access_token"]})
        assert (await ws.receive_json())["type"] == "auth_ok"
        await ws.send_json({"id": 1, "type": "http/config/promote"})
        assert (await ws.receive_json())["success"]
    return {**tokens, "hassUrl": url, "clientId": client_id, "expires": int(time.time() * 1000) + 1_800_000}


async def _show(browser: Browser, url: str | None, wait_for: str, timeout: float = 30) -> None:
    """Open `url` (None: stay) in the frontend and wait until `wait_for` (a JS expression) is true."""
    if url is not None:
        await browser.call("Page.navigate", url=url)
    deadline = time.monotonic() + timeout
    while not await browser.evaluate(wait_for):
        if time.monotonic() > deadline:
            await browser.screenshot(Path("/tmp/coda-screenshot-failed.png"))
            state = await browser.evaluate("(() => { const ha = document.querySelector('home-assistant'); "
                "return JSON.stringify({hass: !!(ha && ha.hass), connected: ha && ha.hass && ha.hass.connected, "
                "panels: ha && ha.hass && Object.keys(ha.hass.panels || {}), user: ha && ha.hass && !!ha.hass.user, "
                "launch: !!document.getElementById('ha-launch-screen'), href: location.href, "
                "services: ha && ha.hass && Object.keys(ha.hass.services || {}).length, "
                "states: ha && ha.hass && Object.keys(ha.hass.states || {}).length, "
                "cstate: ha && ha.hass && ha.hass.config && ha.hass.config.state, "
                "localize: ha && ha.hass && typeof ha.hass.localize, "
                "shadow: ha && ha.shadowRoot && ha.shadowRoot.innerHTML.slice(0, 400)}) })()")
            raise AssertionError(f"{url}: the page never showed what was expected: {state}")
        await asyncio.sleep(0.3)
    # rendered: the page's text and fonts stay the same for a second
    shown, rendered = None, f"{PAGE_TEXT} + document.fonts.status"
    while (now := await browser.evaluate(rendered)) != shown and time.monotonic() < deadline + 10:
        shown = now
        await asyncio.sleep(1.0)


async def _template(session: aiohttp.ClientSession, url: str, headers: dict[str, str], template: str) -> str:
    async with session.post(f"{url}/api/template", headers=headers, json={"template": template}) as response:
        assert response.status == 200, await response.text()
        return await response.text()


# Click the button labelled `label` wherever it is (the frontend is made of web components).
CLICK = """(label) => { const stack = [document.documentElement]; while (stack.length) {
  const node = stack.pop(); if (node.shadowRoot) stack.push(node.shadowRoot);
  for (const child of node.children || []) stack.push(child);
  if (node.nodeType === 1 && /BUTTON/.test(node.tagName)
      && (node.textContent.trim() === label || node.label === label || node.getAttribute('label') === label)) {
    node.click(); return true; } } return false; }"""

# Text of the page through every shadow root (the frontend is made of web components).
PAGE_TEXT = """(() => { const parts = []; const walk = (node) => {
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.childNodes) {
    if (child.nodeType === 3) parts.push(child.textContent); else walk(child); } };
  walk(document.documentElement); return parts.join(' ').replace(/\\s+/g, ' '); })()"""


async def _transcribe(port: int, speech: Path) -> str:
    """One request to the server's speech-to-text, as a satellite's pipeline makes it; the transcript."""
    with wave.open(str(speech)) as wav:
        pcm, rate = wav.readframes(wav.getnframes()), wav.getframerate()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe().event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=pcm).event())
        await client.write_event(AudioStop().event())
        while not Transcript.is_type((event := await client.read_event()).type):
            pass
    return str(Transcript.from_event(event).text)


async def _synthesize(port: int, text: str) -> None:
    """The answer spoken by the server's text-to-speech, as the pipeline's tts step asks for it."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text).event())
        while (await client.read_event()).type != "audio-stop":
            pass


async def test_screenshots_of_a_real_home_assistant(
    home_assistant: HomeAssistantProcess, coda_server: Any, ollama: Any, speech: Path, tmp_path: Path
) -> None:
    from tests.ollama_double import Reply

    out = Path(os.environ.get("CODA_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    async with aiohttp.ClientSession() as session:
        await home_assistant.wait_ready(session)
        tokens = await _onboard(session, home_assistant.url)
        api = {"Authorization": f"Bearer {tokens['access_token']}"}
        browser = Browser(size=(1280, 1240))
        try:
            await browser.open(f"{home_assistant.url}/auth/authorize")
            await browser.evaluate(f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))})")

            # the config flow's first step, opened as the "Add integration" dialog opens it
            await _show(browser, f"{home_assistant.url}/config/integrations/dashboard/add?domain=coda",
                        f"{PAGE_TEXT}.includes('Do you want to set up Coda Voice?')")
            assert await browser.evaluate(f"({CLICK})('OK')")
            await _show(browser, None, f"{PAGE_TEXT}.includes('Connect to a Coda Voice server')")
            text = await browser.evaluate(PAGE_TEXT)
            assert "Wyoming port" in text and "HTTP port" in text
            await browser.screenshot(out / "config-flow.png")

            # add the server through Home Assistant's flow API (what the dialog posts)
            async with session.post(f"{home_assistant.url}/api/config/config_entries/flow",
                                    json={"handler": "coda"}, headers=api) as response:
                flow = await response.json()
            async with session.post(
                    f"{home_assistant.url}/api/config/config_entries/flow/{flow['flow_id']}", headers=api,
                    json={"host": "127.0.0.1", "port": coda_server.port, "http_port": coda_server.http_port,
                          "token": coda_server.token},
            ) as response:
                created = await response.json()
            assert created["type"] == "create_entry", created

            entities = await _template(session, home_assistant.url, api,
                                       "{{ integration_entities('coda') | join(' ') }}")
            agent = next(e for e in entities.split() if e.startswith("conversation."))
            turns = next(e for e in entities.split() if e.endswith("_turns"))
            # a voice turn as the Assist pipeline runs it: speech-to-text, the agent, text-to-speech
            heard = await _transcribe(coda_server.port, speech)
            ollama.script = [Reply(text="Good evening! The house is quiet.")]
            async with session.post(f"{home_assistant.url}/api/conversation/process", headers=api,
                                    json={"text": heard, "agent_id": agent}) as response:
                answer = await response.json()
            assert answer["response"]["speech"]["plain"]["speech"] == "Good evening! The house is quiet.", answer
            await _synthesize(coda_server.port, "Good evening! The house is quiet.")
            # the next pushed analytics snapshot (every 5 s) brings the turn to the sensor
            deadline = time.monotonic() + 30
            while (state := await _template(session, home_assistant.url, api, f"{{{{ states('{turns}') }}}}")) != "1":
                assert time.monotonic() < deadline, f"{turns} stayed {state}"
                await asyncio.sleep(0.2)
            device_id = await _template(session, home_assistant.url, api, f"{{{{ device_id('{turns}') }}}}")

            await _show(browser, f"{home_assistant.url}/config/devices/device/{device_id}",
                        f"{PAGE_TEXT}.includes('Voice to voice latency') && !{PAGE_TEXT}.includes('Unknown')")
            text = await browser.evaluate(PAGE_TEXT)
            assert "Coda Voice" in text and "LLM reachable" in text and "Unknown" not in text
            await browser.screenshot(out / "device-sensors.png")

            await _show(browser, f"{home_assistant.url}/config/integrations/integration/coda",
                        f"{PAGE_TEXT}.includes('Coda Voice (127.0.0.1)')")
            await browser.screenshot(out / "integration.png")

            # a conversation agent's settings: the form of a new one, opened from the entry
            assert await browser.evaluate(f"({CLICK})('Add conversation agent')")
            await _show(browser, None, f"{PAGE_TEXT}.includes('Control Home Assistant')")
            text = await browser.evaluate(PAGE_TEXT)
            assert "Answer length" in text and "Remember facts about users" in text and "Mode" in text
            await browser.screenshot(out / "options.png")
        finally:
            await browser.close()
    for name in ("config-flow.png", "device-sensors.png", "integration.png", "options.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, name
    shutil.rmtree(home_assistant.config_dir / ".storage", ignore_errors=True)
