"""Config flow: a Coda Voice server found by zeroconf or entered by hand, checked before it is
added, with one conversation agent; more agents as subentries (each its own instructions, LLM
API, mode, personality, memory and Home Assistant first); the entry's option: talk-page control."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import (
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryData,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_HOST, CONF_LLM_HASS_API, CONF_NAME, CONF_PORT, CONF_PROMPT, CONF_TOKEN
from homeassistant.core import callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers import llm
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TemplateSelector,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from .api import CodaAuthError, CodaClient, CodaConnectionError, CodaError, NotCodaError, ServerInfo
from .const import (
    CONF_DUPLEX_CONTROL,
    CONF_HTTP_PORT,
    CONF_LOCAL_FIRST,
    CONF_MEMORY,
    CONF_MODE,
    CONF_TONE,
    CONF_VERBOSITY,
    DEFAULT_AGENT_NAME,
    DEFAULT_HTTP_PORT,
    DEFAULT_PORT,
    DOMAIN,
    MODE_OPTIONS,
    SERVER_DEFAULT,
    SUBENTRY_AGENT,
    TONE_OPTIONS,
    TXT_CODA,
    TXT_HTTP_PORT,
    TXT_SERVER_ID,
    VERBOSITY_OPTIONS,
)
from .coordinator import CodaConfigEntry

try:  # Home Assistant 2026.3 and later validate with probatio (voluptuous' successor, same API)
    import probatio as vol
except ImportError:
    import voluptuous as vol  # type: ignore[no-redef]

PORT = vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))
TOKEN_FIELD: dict[Any, Any] = {
    vol.Optional(CONF_TOKEN): TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD)),
}
CONNECTION_SCHEMA = vol.Schema({
    vol.Required(CONF_HOST): str,
    vol.Required(CONF_PORT, default=DEFAULT_PORT): PORT,
    vol.Required(CONF_HTTP_PORT, default=DEFAULT_HTTP_PORT): PORT,
    **TOKEN_FIELD,
})
DEFAULT_AGENT = {  # a conversation agent's settings (a subentry's data)
    CONF_LLM_HASS_API: [llm.LLM_API_ASSIST],
    CONF_PROMPT: llm.DEFAULT_INSTRUCTIONS_PROMPT,
    CONF_MODE: SERVER_DEFAULT,
    CONF_VERBOSITY: SERVER_DEFAULT,
    CONF_TONE: SERVER_DEFAULT,
    CONF_MEMORY: True,
    CONF_LOCAL_FIRST: True,
}
DEFAULT_OPTIONS = {CONF_DUPLEX_CONTROL: True}  # the entry's: the server's talk page may control the home


def first_agent(title: str) -> list[ConfigSubentryData]:
    """The conversation agent a new server entry starts with."""
    return [ConfigSubentryData(data=DEFAULT_AGENT, subentry_type=SUBENTRY_AGENT, title=title, unique_id=None)]


class CodaConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a Coda Voice server."""

    VERSION = 2  # 1: the agent's settings in the entry's options (one agent per server)

    def __init__(self) -> None:
        self._discovered: dict[str, Any] = {}
        self._name = ""

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: CodaConfigEntry) -> CodaOptionsFlow:
        return CodaOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(cls, config_entry: CodaConfigEntry) -> dict[str, type[ConfigSubentryFlow]]:
        return {SUBENTRY_AGENT: AgentFlow}

    async def _async_check(self, data: dict[str, Any]) -> tuple[ServerInfo | None, dict[str, str]]:
        """The server behind `data`, or the form error that says why it cannot be used."""
        client = CodaClient(async_get_clientsession(self.hass), data[CONF_HOST], data[CONF_PORT],
                            data[CONF_HTTP_PORT], data.get(CONF_TOKEN))
        try:
            server = await client.async_server_info()
            await client.async_analytics()  # the token
        except CodaAuthError:
            return None, {"base": "invalid_auth"}
        except NotCodaError:
            return None, {"base": "not_coda"}
        except CodaConnectionError:
            return None, {"base": "cannot_connect"}
        return server, {}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            server, errors = await self._async_check(user_input)
            if server is not None:
                await self.async_set_unique_id(server.server_id)
                self._abort_if_unique_id_configured(updates=_connection(user_input))
                return self.async_create_entry(title=f"Coda Voice ({user_input[CONF_HOST]})", data=user_input,
                                               options=DEFAULT_OPTIONS, subentries=first_agent(DEFAULT_AGENT_NAME))
        return self.async_show_form(
            step_id="user", data_schema=self.add_suggested_values_to_schema(CONNECTION_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """A `_wyoming._tcp` advertisement: only Coda servers (TXT `coda=1` and an `id`) go on."""
        properties = discovery_info.properties
        server_id = properties.get(TXT_SERVER_ID)
        if properties.get(TXT_CODA) != "1" or not server_id:
            return self.async_abort(reason="not_coda_server")
        try:
            http_port = int(properties.get(TXT_HTTP_PORT) or DEFAULT_HTTP_PORT)
        except ValueError:
            http_port = DEFAULT_HTTP_PORT
        self._discovered = {CONF_HOST: discovery_info.host, CONF_PORT: discovery_info.port, CONF_HTTP_PORT: http_port}
        await self.async_set_unique_id(server_id)
        entry = self.hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, server_id)
        if entry is not None and _connection(entry.data) != self._discovered:
            # a known server at a new address: it moves only if it proves it holds the entry's token
            client = CodaClient(async_get_clientsession(self.hass), discovery_info.host,
                                self._discovered[CONF_PORT], http_port, entry.data.get(CONF_TOKEN))
            try:
                await client.async_prove_identity(server_id)
            except CodaError as err:
                ir.async_create_issue(
                    self.hass, DOMAIN, f"unproven_server_{entry.entry_id}", is_fixable=False,
                    severity=ir.IssueSeverity.WARNING, translation_key="unproven_server",
                    translation_placeholders={"title": entry.title, "host": discovery_info.host, "error": str(err)})
                return self.async_abort(reason="unproven_server")
            ir.async_delete_issue(self.hass, DOMAIN, f"unproven_server_{entry.entry_id}")
        self._abort_if_unique_id_configured(updates=self._discovered)  # a proven server keeps its entry
        self._name = discovery_info.name.split(".")[0]
        self.context["title_placeholders"] = {"name": self._name}
        return await self.async_step_zeroconf_confirm()

    async def async_step_zeroconf_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**self._discovered, **user_input}
            server, errors = await self._async_check(data)
            if server is not None:
                return self.async_create_entry(title=self._name, data=data, options=DEFAULT_OPTIONS,
                                               subentries=first_agent(DEFAULT_AGENT_NAME))
        return self.async_show_form(
            step_id="zeroconf_confirm", data_schema=vol.Schema(TOKEN_FIELD), errors=errors,
            description_placeholders={"name": self._name, "host": self._discovered[CONF_HOST]},
        )

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The Coda Voice add-on, announced through the Supervisor: its address, ports and token
        come with the announcement (a channel only the Supervisor can write to)."""
        config = discovery_info.config
        try:
            data = {CONF_HOST: str(config[CONF_HOST]), CONF_PORT: int(config[CONF_PORT]),
                    CONF_HTTP_PORT: int(config.get(CONF_HTTP_PORT) or DEFAULT_HTTP_PORT)}
        except (KeyError, TypeError, ValueError):
            return self.async_abort(reason="not_coda_server")
        if config.get(CONF_TOKEN):
            data[CONF_TOKEN] = str(config[CONF_TOKEN])
        server, errors = await self._async_check(data)
        if server is None:
            return self.async_abort(reason=errors["base"])
        await self.async_set_unique_id(server.server_id)
        self._abort_if_unique_id_configured(updates=data)  # a rebuilt add-on keeps its entry
        self._discovered, self._name = data, discovery_info.name
        self.context["title_placeholders"] = {"name": self._name}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is not None:
            return self.async_create_entry(title=self._name, data=self._discovered, options=DEFAULT_OPTIONS,
                                           subentries=first_agent(DEFAULT_AGENT_NAME))
        return self.async_show_form(step_id="hassio_confirm", description_placeholders={"addon": self._name})

    async def async_step_reauth(self, entry_data: dict[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The server's HTTP token changed."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            server, errors = await self._async_check({**entry.data, **user_input})
            if server is not None:
                return self.async_update_reload_and_abort(entry, data_updates=user_input)
        return self.async_show_form(step_id="reauth_confirm", data_schema=vol.Schema(TOKEN_FIELD), errors=errors)

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """New address, ports or token for the same server."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            server, errors = await self._async_check(user_input)
            if server is not None:
                await self.async_set_unique_id(server.server_id)
                self._abort_if_unique_id_mismatch(reason="wrong_server")
                return self.async_update_reload_and_abort(entry, data=user_input)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(CONNECTION_SCHEMA, user_input or entry.data),
            errors=errors,
        )


def _connection(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in (CONF_HOST, CONF_PORT, CONF_HTTP_PORT)}


def _select(options: tuple[str, ...], key: str) -> SelectSelector:
    return SelectSelector(SelectSelectorConfig(options=list(options), translation_key=key,
                                               mode=SelectSelectorMode.DROPDOWN))


class CodaOptionsFlow(OptionsFlow):
    """What the server's talk-page sessions may do in this home."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is not None:
            return self.async_create_entry(data=user_input)
        schema = vol.Schema({vol.Required(CONF_DUPLEX_CONTROL, default=True): BooleanSelector()})
        return self.async_show_form(
            step_id="init", data_schema=self.add_suggested_values_to_schema(schema, self.config_entry.options)
        )


class AgentFlow(ConfigSubentryFlow):
    """A conversation agent on the server: added, or changed (reconfigure)."""

    async def async_step_set_options(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        entry: CodaConfigEntry = self._get_entry()
        if entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="entry_not_loaded")
        new = self.source == "user"
        errors: dict[str, str] = {}
        if user_input is not None:
            mode = user_input.get(CONF_MODE, SERVER_DEFAULT)
            if mode != SERVER_DEFAULT and mode not in entry.runtime_data.server.modes:
                errors[CONF_MODE] = "mode_not_loaded"  # the server did not load what it needs
            else:
                if not user_input.get(CONF_LLM_HASS_API):
                    user_input.pop(CONF_LLM_HASS_API, None)
                if new:
                    title = user_input.pop(CONF_NAME)
                    return self.async_create_entry(title=title, data=user_input)
                return self.async_update_and_abort(entry, self._get_reconfigure_subentry(), data=user_input)
        apis = [SelectOptionDict(label=api.name, value=api.id) for api in llm.async_get_apis(self.hass)]
        fields: dict[Any, Any] = {vol.Required(CONF_NAME): str} if new else {}
        schema = vol.Schema({
            **fields,
            vol.Optional(CONF_LLM_HASS_API): SelectSelector(SelectSelectorConfig(options=apis, multiple=True)),
            vol.Optional(CONF_PROMPT): TemplateSelector(),
            vol.Required(CONF_MODE, default=SERVER_DEFAULT): _select(MODE_OPTIONS, CONF_MODE),
            vol.Required(CONF_VERBOSITY, default=SERVER_DEFAULT): _select(VERBOSITY_OPTIONS, CONF_VERBOSITY),
            vol.Required(CONF_TONE, default=SERVER_DEFAULT): _select(TONE_OPTIONS, CONF_TONE),
            vol.Required(CONF_MEMORY, default=True): BooleanSelector(),
            vol.Required(CONF_LOCAL_FIRST, default=True): BooleanSelector(),
        })
        suggested = user_input or (DEFAULT_AGENT if new else self._get_reconfigure_subentry().data)
        return self.async_show_form(
            step_id="set_options", data_schema=self.add_suggested_values_to_schema(schema, suggested), errors=errors,
            description_placeholders={"modes": ", ".join(entry.runtime_data.server.modes)},
        )

    async_step_user = async_step_set_options
    async_step_reconfigure = async_step_set_options
