"""The config flow against real servers: manual entry, zeroconf discovery of the server's real
advertisement, errors, duplicates, reauthentication and options."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from homeassistant import config_entries
from homeassistant.components.zeroconf.discovery import info_from_service
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import llm
from pytest_homeassistant_custom_component.common import MockConfigEntry
from wyoming.event import Event, async_read_event, async_write_event
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from custom_components.coda.config_flow import DEFAULT_AGENT, DEFAULT_OPTIONS
from custom_components.coda.const import DOMAIN


def _form(server: Any, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "http_port": server.http_port, **extra}


async def _user_flow(hass: HomeAssistant, data: dict[str, Any]) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "user"
    return await hass.config_entries.flow.async_configure(result["flow_id"], data)


@pytest.fixture
async def plain_wyoming(socket_enabled: None) -> AsyncIterator[int]:
    """A Wyoming server that is not Coda Voice (speech-to-text only), on a free port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (event := await async_read_event(reader)) is not None:
            if event.type == "describe":
                await async_write_event(Event("info", {"asr": [{
                    "name": "whisper", "description": "", "installed": True, "version": "1",
                    "attribution": {"name": "", "url": ""}, "models": []}]}), writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_user_flow_creates_entry_once(hass: HomeAssistant, coda_server: Any) -> None:
    result = await _user_flow(hass, _form(coda_server, token=coda_server.token))
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry = result["result"]
    assert entry.unique_id == coda_server.server_id == coda_server.http_get("/healthz")[1]["server_id"]
    assert entry.data == _form(coda_server, token=coda_server.token)
    (agent,) = entry.subentries.values()  # the server comes with one conversation agent
    assert agent.title == "Coda Voice" and agent.data[CONF_LLM_HASS_API] == [llm.LLM_API_ASSIST]
    await hass.async_block_till_done()

    again = await _user_flow(hass, _form(coda_server, token=coda_server.token))
    assert again["type"] is FlowResultType.ABORT and again["reason"] == "already_configured"


async def test_user_flow_errors(hass: HomeAssistant, coda_server_factory: Any, plain_wyoming: int) -> None:
    server = coda_server_factory("--http-token", "kitchen-s3cret")
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    unreachable = await _user_flow(hass, {**_form(server), "port": closed_port})
    assert unreachable["errors"] == {"base": "cannot_connect"}
    wrong_http = await _user_flow(hass, _form(server, http_port=server.port))  # Wyoming, not HTTP, on that port
    assert wrong_http["errors"] == {"base": "cannot_connect"}
    other = await _user_flow(hass, {**_form(server), "port": plain_wyoming})
    assert other["errors"] == {"base": "not_coda"}
    no_token = await _user_flow(hass, _form(server))
    assert no_token["errors"] == {"base": "invalid_auth"}
    bad_token = await hass.config_entries.flow.async_configure(no_token["flow_id"], _form(server, token="nope"))
    assert bad_token["errors"] == {"base": "invalid_auth"}
    good = await hass.config_entries.flow.async_configure(no_token["flow_id"], _form(server, token="kitchen-s3cret"))
    assert good["type"] is FlowResultType.CREATE_ENTRY and good["data"]["token"] == "kitchen-s3cret"


async def _discover(port: int) -> Any:
    """The server's real `_wyoming._tcp` advertisement, as Home Assistant's zeroconf sees it."""
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        info = AsyncServiceInfo("_wyoming._tcp.local.", "coda-ha._wyoming._tcp.local.")
        assert await info.async_request(zc.zeroconf, 5000)
        assert info.port == port
        return info_from_service(info)
    finally:
        await zc.async_close()


async def test_zeroconf_discovery(hass: HomeAssistant, coda_server_factory: Any) -> None:
    server = coda_server_factory("--zeroconf", "coda-ha", "--zeroconf-host", "127.0.0.1")
    discovery = await _discover(server.port)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=discovery)
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"] == {"name": "coda-ha", "host": "127.0.0.1"}
    no_token = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert no_token["errors"] == {"base": "invalid_auth"}  # every server has a token: the user types it
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"token": server.token})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry = result["result"]
    assert entry.unique_id == server.server_id
    assert entry.data == _form(server, token=server.token)
    await hass.async_block_till_done()

    # another Wyoming server (no coda TXT property) is left to other integrations
    properties = {k: v for k, v in discovery.properties.items() if k != "coda"}
    plain = dataclasses.replace(discovery, properties=properties)
    other = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=plain)
    assert other["type"] is FlowResultType.ABORT and other["reason"] == "not_coda_server"


@dataclasses.dataclass
class Impostor:
    """A server on the LAN that claims a known server id (its Wyoming `describe` and `/healthz`
    say so) but does not hold the token."""

    wyoming_port: int = 0
    http_port: int = 0
    claims: str = ""  # the server id it claims
    asked: list[str] = dataclasses.field(default_factory=list)  # the HTTP paths it was asked for


@pytest.fixture
async def impostor(socket_enabled: None) -> AsyncIterator[Impostor]:
    from aiohttp import web

    fake = Impostor()

    async def http(request: web.Request) -> web.Response:
        fake.asked.append(request.path)
        if request.path == "/api/challenge":
            return web.json_response({"server_id": fake.claims, "proof": "0" * 64})
        return web.json_response({"ready": True, "server_id": fake.claims})

    async def wyoming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (event := await async_read_event(reader)) is not None:
            if event.type == "describe":
                await async_write_event(Event("info", {"handle": [{
                    "name": "coda-llm", "description": "", "installed": True, "version": "1",
                    "attribution": {"name": "", "url": ""}, "models": []}]}), writer)
        writer.close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", http)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    tcp = await asyncio.start_server(wyoming, "127.0.0.1", 0)
    fake.wyoming_port = tcp.sockets[0].getsockname()[1]
    fake.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake
    tcp.close()
    await runner.cleanup()


async def test_a_known_server_moves_only_when_it_proves_the_token(
    hass: HomeAssistant, coda_server_factory: Any, impostor: Impostor
) -> None:
    """A zeroconf announcement with a known server id from another address moves the entry only
    when the server there proves it holds the entry's token; an impostor leaves the entry where
    it is, a repair issue says so, and the home link never goes to it."""
    from homeassistant.helpers import issue_registry as ir

    from tests_ha.common import setup_coda

    server = coda_server_factory("--zeroconf", "coda-ha", "--zeroconf-host", "127.0.0.1")
    discovery = await _discover(server.port)
    entry = await setup_coda(hass, server)
    where = dict(entry.data)

    impostor.claims = server.server_id
    claimed = dataclasses.replace(discovery, port=impostor.wyoming_port,
                                  properties={**discovery.properties, "http_port": str(impostor.http_port)})
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=claimed)
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "unproven_server"
    assert dict(entry.data) == where  # not moved
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"unproven_server_{entry.entry_id}")
    assert issue is not None and issue.translation_placeholders["host"] == "127.0.0.1"
    assert impostor.asked == ["/api/challenge"]  # neither the token nor the home link went there

    # the real server, restarted on other ports with its data (same id, same token): it proves itself
    server.kill()
    moved = coda_server_factory("--data-dir", str(server.data_dir))
    assert moved.server_id == server.server_id
    seen = dataclasses.replace(discovery, port=moved.port,
                               properties={**discovery.properties, "http_port": str(moved.http_port)})
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=seen)
    assert again["type"] is FlowResultType.ABORT and again["reason"] == "already_configured"
    assert (entry.data["port"], entry.data["http_port"]) == (moved.port, moved.http_port)
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"unproven_server_{entry.entry_id}") is None
    await hass.async_block_till_done()


async def test_supervisor_discovery_offers_both_integrations(hass: HomeAssistant, coda_server_factory: Any) -> None:
    """What the add-on announces through the Supervisor (the payloads tests/test_addon.py sees its
    discovery script send) as Home Assistant's hassio component hands them to the config flows:
    the Coda integration and Home Assistant's own wyoming integration both set up the server."""
    from homeassistant.helpers.service_info.hassio import HassioServiceInfo
    from homeassistant.setup import async_setup_component

    from tests.addon_discovery import discovery_payloads

    server = coda_server_factory("--http-token", "side-token")
    payloads = {p["service"]: p["config"] for p in discovery_payloads("127.0.0.1", server.port, server.http_port,
                                                                       "side-token")}

    def announced(service: str) -> HassioServiceInfo:
        return HassioServiceInfo(config=payloads[service], name="Coda Voice", slug="local_coda_voice", uuid="0" * 32)

    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=announced("coda"))
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"addon": "Coda Voice"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry = result["result"]
    assert entry.unique_id == server.server_id and entry.title == "Coda Voice"
    assert entry.data == _form(server, token="side-token") and entry.options == DEFAULT_OPTIONS
    assert [agent.data for agent in entry.subentries.values()] == [DEFAULT_AGENT]
    await hass.async_block_till_done()
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=announced("coda"))
    assert again["type"] is FlowResultType.ABORT and again["reason"] == "already_configured"

    # an announcement with a wrong token is refused, not half set up
    wrong = HassioServiceInfo(config={**payloads["coda"], "token": "wrong"}, name="Coda Voice", slug="x", uuid="1")
    refused = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=wrong)
    assert refused["type"] is FlowResultType.ABORT and refused["reason"] == "invalid_auth"

    assert await async_setup_component(hass, "homeassistant", {})
    result = await hass.config_entries.flow.async_init(
        "wyoming", context={"source": config_entries.SOURCE_HASSIO}, data=announced("wyoming"))
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "hassio_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    assert result["data"] == {"host": "127.0.0.1", "port": server.port}


async def test_reauth_and_options(hass: HomeAssistant, coda_server_factory: Any) -> None:
    server = coda_server_factory("--http-token", "first-token")
    entry = MockConfigEntry(domain=DOMAIN, unique_id=server.server_id, data=_form(server, token="old-token"),
                            options=DEFAULT_OPTIONS)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is config_entries.ConfigEntryState.SETUP_ERROR  # auth failed: a reauth flow starts
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [config_entries.SOURCE_REAUTH]
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"], {"token": "still wrong"})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"], {"token": "first-token"})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.state is config_entries.ConfigEntryState.LOADED

    options = await hass.config_entries.options.async_init(entry.entry_id)  # the entry's: the talk page
    options = await hass.config_entries.options.async_configure(options["flow_id"], {"duplex_control": False})
    assert options["type"] is FlowResultType.CREATE_ENTRY and entry.options == {"duplex_control": False}
    await hass.async_block_till_done()
    (agent,) = entry.subentries.values()  # the agent's own settings: reconfigured as a subentry
    flow = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "conversation"), context={"source": "reconfigure", "subentry_id": agent.subentry_id})
    assert flow["type"] is FlowResultType.FORM and flow["step_id"] == "set_options"
    flow = await hass.config_entries.subentries.async_configure(flow["flow_id"], {
        CONF_LLM_HASS_API: [], "prompt": "Be terse.", "mode": "server", "verbosity": "detailed", "tone": "formal",
        "memory": False, "local_first": True})
    assert flow["type"] is FlowResultType.ABORT and flow["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    agent = entry.subentries[agent.subentry_id]
    assert CONF_LLM_HASS_API not in agent.data and agent.data["memory"] is False and agent.data["prompt"] == "Be terse."
    assert entry.state is config_entries.ConfigEntryState.LOADED  # reloaded with the new options


async def test_reconfigure_moves_the_entry_only_to_its_own_server(hass: HomeAssistant, coda_server_factory: Any) -> None:
    """Reconfigure takes a new address, ports or token for the same server (its id proves it),
    refuses another server's address with `wrong_server`, and leaves the entry as it was then."""
    ours = coda_server_factory("--http-token", "our-token")
    other = coda_server_factory("--http-token", "other-token")
    assert ours.server_id != other.server_id
    entry = MockConfigEntry(domain=DOMAIN, unique_id=ours.server_id, data=_form(ours, host="localhost", token="our-token"),
                            options=DEFAULT_OPTIONS, version=2)
    entry.add_to_hass(hass)

    async def reconfigure(data: dict[str, Any]) -> dict[str, Any]:
        flow = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": config_entries.SOURCE_RECONFIGURE, "entry_id": entry.entry_id})
        assert flow["type"] is FlowResultType.FORM and flow["step_id"] == "reconfigure"
        return await hass.config_entries.flow.async_configure(flow["flow_id"], data)

    result = await reconfigure(_form(other, token="other-token"))
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "wrong_server"
    assert entry.data == _form(ours, host="localhost", token="our-token")
    result = await reconfigure(_form(ours, token="wrong"))
    assert result["errors"] == {"base": "invalid_auth"}
    result = await reconfigure(_form(ours, token="our-token"))
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reconfigure_successful"
    assert entry.data == _form(ours, token="our-token") and entry.unique_id == ours.server_id
