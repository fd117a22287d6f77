"""The home link: the server asks this Home Assistant for the tools and the system prompt of
turns that no conversation agent request carries (talk-page duplex sessions), lets its own agent
try them first (local first, the entry's option), and runs their tool calls here — through the entry's LLM API, with the conversation agent's exposure rules, so
only exposed entities can be reached. It also reads the names of the exposed devices and of the
areas, the words its speech recognition should expect."""

from __future__ import annotations

from typing import Any

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import chat_session, llm

from .const import CONF_LOCAL_FIRST, DOMAIN
from .coordinator import CodaConfigEntry
from .llm_tools import plain_json, tool_definitions
from .local_agent import local_answer, speech_of
from .targets import area_names, exposed_names, mended_arguments

try:
    import probatio as vol
except ImportError:
    import voluptuous as vol  # type: ignore[no-redef]


class HomeLink:
    """Answers the server's requests over the link of one config entry."""

    def __init__(self, hass: HomeAssistant, entry: CodaConfigEntry, agent: ConfigSubentry | None) -> None:
        """`agent`: the conversation agent whose settings the sessions get (LLM API, instructions,
        Home Assistant first); None: talk-page sessions get no tools here, only the home's words."""
        self.hass = hass
        self.entry = entry
        self.agent = agent
        self._api: llm.APIInstance | None = None  # of the latest context, for its tool calls

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("type")
        if kind == "vocabulary":  # the words the server's speech recognition should expect
            return {"names": exposed_names(self.hass), "areas": area_names(self.hass)}
        agent = self.agent
        if agent is None:
            return {"error": "talk-page sessions may not control this home (the entry's option)"}
        if kind == "context":
            return await self._context(agent, request.get("language") or self.hass.config.language)
        if kind == "tool_call":
            return await self._call(str(request.get("name")), request.get("arguments"), str(request.get("call_id")))
        if kind == "local":
            return await self._local(agent, str(request.get("text") or ""),
                                     request.get("language") or self.hass.config.language)
        return {"error": f"unknown request {kind!r}"}

    async def _context(self, agent: ConfigSubentry, language: str) -> dict[str, Any]:
        """The tools and system prompt the conversation agent would give a turn without a user
        or a device (the same chat log code builds them)."""
        llm_context = llm.LLMContext(platform=DOMAIN, context=Context(), language=language,
                                     assistant=conversation.DOMAIN, device_id=None)
        options = agent.data
        with (chat_session.async_get_chat_session(self.hass) as session,
              conversation.async_get_chat_log(self.hass, session) as chat_log):
            try:
                await chat_log.async_provide_llm_data(llm_context, options.get(CONF_LLM_HASS_API),
                                                      options.get(CONF_PROMPT), None)
            except conversation.ConverseError as err:
                return {"error": str(err)}
            self._api = chat_log.llm_api
            system = chat_log.content[0]
            prompt = system.content if isinstance(system, conversation.SystemContent) else ""
        return {"tools": tool_definitions(self._api) if self._api else [], "prompt": prompt}

    async def _local(self, agent: ConfigSubentry, text: str, language: str) -> dict[str, Any]:
        """Home Assistant's own agent on a talk-page utterance, when the entry puts it first: its
        speech when it handled the turn (nothing: the LLM answers)."""
        if not (text and agent.data.get(CONF_LOCAL_FIRST, True)):
            return {}
        response = await local_answer(self.hass, text, language, Context())
        return {"speech": speech_of(response)} if response is not None else {}

    async def _call(self, name: str, arguments: Any, call_id: str) -> dict[str, Any]:
        if self._api is None:
            return {"error": "this Home Assistant gave no tools"}
        tool_input = llm.ToolInput(tool_name=name, id=call_id,
                                   tool_args=mended_arguments(self.hass, arguments if isinstance(arguments, dict) else {}))
        try:
            result = await self._api.async_call_tool(tool_input)
        except (HomeAssistantError, vol.Invalid) as err:
            return {"error": f"{type(err).__name__}: {err}"}
        return {"result": plain_json(result)}
