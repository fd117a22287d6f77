"""Conversation agent: Home Assistant's own agent tries each turn first (local first, an option);
the rest runs on the server's `handle` service with the chat log's history. The tools of Home
Assistant's LLM API travel with the request and every tool call the server asks for runs here,
through that API, so only exposed entities can be reached."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT, MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import intent, llm
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.translation import async_get_translations

from .api import CodaConnectionError, CodaTurn, Holding, TextDelta, ToolCallRequest, TurnEnd
from .const import (
    CONF_LOCAL_FIRST,
    CONF_MEMORY,
    CONF_MODE,
    CONF_TONE,
    CONF_VERBOSITY,
    DOMAIN,
    MANUFACTURER,
    MAX_HISTORY,
    MAX_TOOL_ROUNDS,
    SERVER_DEFAULT,
)
from .coordinator import CodaConfigEntry, agents
from .entity import CodaEntity
from .llm_tools import plain_json, tool_definitions
from .local_agent import local_answer, speech_of
from .targets import mended_arguments, similar_names

# turns of one agent may run side by side: the server serialises nothing per agent
PARALLEL_UPDATES = 0

_LOGGER = logging.getLogger(__name__)

FALLBACK_MESSAGES = {  # when the translations cannot be read
    "server_unavailable": "The Coda Voice server cannot be reached right now.",
    "too_many_tool_calls": "The answer needed more tool calls than allowed.",
    "request_refused": "The Coda Voice server could not take that request.",
}


async def async_setup_entry(
    hass: HomeAssistant, entry: CodaConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    for agent in agents(entry):
        async_add_entities([CodaConversationEntity(entry, agent)], config_subentry_id=agent.subentry_id)


def _history(chat_log: conversation.ChatLog) -> list[dict[str, str]]:
    """The conversation so far as Home Assistant keeps it (the turns its own agent answered too):
    the words of user and assistant messages, without the system prompt, the tool records and
    the message being answered. The server uses it instead of its own history."""
    messages = [{"role": "user" if isinstance(c, conversation.UserContent) else "assistant", "content": c.content}
                for c in chat_log.content[:-1]
                if isinstance(c, conversation.UserContent | conversation.AssistantContent) and c.content]
    return messages[-MAX_HISTORY:]


def _tool_result(content: conversation.ToolResultContent) -> Any:
    """The tool's answer of a chat log entry as plain JSON."""
    result = getattr(content, "result", None)  # from 2026.10; `tool_result` before
    return plain_json(result if result is not None else content.tool_result)


class CodaConversationEntity(conversation.ConversationEntity, conversation.AbstractConversationAgent, CodaEntity):
    """One conversation agent of the server (a subentry: its instructions, LLM API, mode,
    personality, memory, Home Assistant first), on a device of its own under the server's."""

    _attr_name = None
    _attr_supports_streaming = True

    def __init__(self, entry: CodaConfigEntry, agent: ConfigSubentry) -> None:
        super().__init__(entry, "conversation")
        self.entry = entry
        self.options = agent.data
        server = entry.runtime_data.server
        self._attr_unique_id = agent.subentry_id
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, agent.subentry_id)}, name=agent.title, manufacturer=MANUFACTURER,
            model="Conversation agent", entry_type=DeviceEntryType.SERVICE,
            via_device=(DOMAIN, server.server_id),  # type: ignore[typeddict-unknown-key]  # 2026.2's only key
        )
        # CONTROL only when the server's turns can act: a moshi_only server without an LLM cannot
        if self.options.get(CONF_LLM_HASS_API) and server.device_control:
            self._attr_supported_features = conversation.ConversationEntityFeature.CONTROL

    @property
    def supported_languages(self) -> list[str] | Literal["*"]:
        return MATCH_ALL

    def _whose(self, user_input: conversation.ConversationInput, conversation_id: str) -> dict[str, Any]:
        """Whose turn it is, as every request of this agent says: the conversation, the user, memory."""
        context: dict[str, Any] = {"conversation_id": conversation_id, "memory": self.options.get(CONF_MEMORY, True)}
        if user_id := user_input.context.user_id:
            context["user_id"] = user_id
        return context

    def _request_context(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
    ) -> dict[str, Any]:
        """What the server reads from a transcript's context (docs/protocol.md)."""
        options = self.options
        context = self._whose(user_input, chat_log.conversation_id)
        if user_input.device_id:
            context["device_id"] = user_input.device_id
        if chat_log.content and isinstance(chat_log.content[0], conversation.SystemContent):
            context["extra_system_prompt"] = chat_log.content[0].content  # the prompt plus the exposed entities
        if chat_log.llm_api is not None:
            context["tools"] = tool_definitions(chat_log.llm_api)
        context["history"] = _history(chat_log)
        personality = {key: options[key] for key in (CONF_VERBOSITY, CONF_TONE)
                       if options.get(key, SERVER_DEFAULT) != SERVER_DEFAULT}
        if options.get(CONF_MODE, SERVER_DEFAULT) != SERVER_DEFAULT:
            context["mode"] = options[CONF_MODE]
        if personality:
            context["personality"] = personality
        return context

    async def _async_handle_message(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
    ) -> conversation.ConversationResult:
        options = self.options
        if options.get(CONF_LOCAL_FIRST, True) and (local := await self._local(user_input, chat_log)) is not None:
            return local
        try:
            await chat_log.async_provide_llm_data(
                user_input.as_llm_context(DOMAIN), options.get(CONF_LLM_HASS_API), options.get(CONF_PROMPT),
                user_input.extra_system_prompt,
            )
        except conversation.ConverseError as err:
            return err.as_conversation_result()

        client = self.entry.runtime_data.client
        state = _TurnState()
        first = len(chat_log.content)
        try:
            context = self._request_context(user_input, chat_log)
            async with client.turn(user_input.text, user_input.language, context) as turn:
                for _ in range(MAX_TOOL_ROUNDS + 1):
                    async for _content in chat_log.async_add_delta_content_stream(
                        user_input.agent_id, self._deltas(turn, state, user_input.language)
                    ):
                        pass
                    if state.end is not None:
                        break
                    if chat_log.unresponded_tool_results:
                        last = chat_log.content[-1]
                        assert isinstance(last, conversation.ToolResultContent)
                        await turn.send_tool_result(last.tool_call_id, self._tool_answer(last, state.calls))
        except CodaConnectionError as err:
            self.coordinator.async_set_update_error(err)  # unavailable until the server answers again
            return await self._error_result(user_input, chat_log, "server_unavailable")
        end = state.end
        if end is None:
            return await self._error_result(user_input, chat_log, "too_many_tool_calls")
        if end.refused:  # a request the server could not take: said in the user's language
            return await self._error_result(user_input, chat_log, "request_refused")
        if not end.handled:
            return await self._error_result(user_input, chat_log, None, end.text)
        if not isinstance(chat_log.content[-1], conversation.AssistantContent):  # a turn ends on words
            chat_log.async_add_assistant_content_without_tools(
                conversation.AssistantContent(agent_id=user_input.agent_id, content=end.text))
        _without_holding(chat_log, first, state.holding)
        result = conversation.async_get_result_from_chat_log(user_input, chat_log)
        if state.holding:  # spoken before the answer, kept out of the history
            result.response.async_set_speech(f"{state.holding} {speech_of(result.response)}")
        return result

    async def _local(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
    ) -> conversation.ConversationResult | None:
        """Home Assistant's own agent on this turn (local first); its answer when it handled the
        turn, None when the turn is for the LLM."""
        try:
            response = await local_answer(
                self.hass, user_input.text, user_input.language, user_input.context,
                f"{chat_log.conversation_id}-local", user_input.device_id, getattr(user_input, "satellite_id", None),
                self.entry.runtime_data.client.async_read_against_audio,
            )
        except Exception:
            _LOGGER.exception("Home Assistant's agent failed on %r; the LLM answers", user_input.text)
            return None
        if response is None:
            return None
        speech = speech_of(response)
        chat_log.async_add_assistant_content_without_tools(
            conversation.AssistantContent(agent_id=user_input.agent_id, content=speech))
        if speech:
            self.entry.async_create_background_task(
                self.hass, self._record_local(user_input, chat_log.conversation_id, speech), f"{DOMAIN} local turn")
        return conversation.ConversationResult(response=response, conversation_id=chat_log.conversation_id,
                                               continue_conversation=False)

    async def _record_local(self, user_input: conversation.ConversationInput, conversation_id: str,
                            speech: str) -> None:
        """Tell the server what Home Assistant's agent answered (its history, the `local` route)."""
        context = {**self._whose(user_input, conversation_id), "answered_locally": speech}
        try:
            async with self.entry.runtime_data.client.turn(user_input.text, user_input.language, context) as turn:
                async for _event in turn.events():
                    pass
        except CodaConnectionError as err:
            _LOGGER.debug("The server did not note a local turn: %s", err)

    def _tool_answer(self, content: conversation.ToolResultContent, calls: dict[str, llm.ToolInput]) -> Any:
        """The tool's result for the server; a call that matched no entity also gets the exposed
        names it could have meant, for the LLM's one corrective round."""
        result = _tool_result(content)
        call = calls.get(content.tool_call_id)
        if isinstance(result, dict) and result.get("error") == "MatchFailedError" and call is not None:
            result = {**result, "names": similar_names(self.hass, call.tool_args)}
        return result

    async def _deltas(
        self, turn: CodaTurn, state: _TurnState, language: str
    ) -> AsyncIterator[conversation.AssistantContentDeltaDict]:
        """One assistant message for the chat log: the server's text until a tool call (which Home
        Assistant then runs) or the end of the turn (kept in `state`)."""
        yield {"role": "assistant"}
        async for event in turn.events():
            if isinstance(event, TextDelta):
                state.streamed = True
                yield {"content": event.text}
            elif isinstance(event, Holding) and not state.streamed and not state.holding:
                strings = await async_get_translations(self.hass, language, "exceptions", [DOMAIN])
                state.holding = strings.get(f"component.{DOMAIN}.exceptions.one_moment.message", event.text)
                yield {"content": state.holding + " "}
            elif isinstance(event, ToolCallRequest):
                call = llm.ToolInput(id=event.id, tool_name=event.name,
                                     tool_args=mended_arguments(self.hass, event.arguments))
                state.calls[event.id] = call
                yield {"tool_calls": [call]}
            elif isinstance(event, TurnEnd):
                if event.handled and event.text and not state.streamed:
                    yield {"content": event.text}
                state.end = event

    async def _error_result(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog, key: str | None,
        text: str | None = None,
    ) -> conversation.ConversationResult:
        """The server's own spoken error, or ours (translation `key`) in the user's language."""
        if not text:
            strings = await async_get_translations(self.hass, user_input.language, "exceptions", [DOMAIN])
            key = key or "server_unavailable"
            text = strings.get(f"component.{DOMAIN}.exceptions.{key}.message", FALLBACK_MESSAGES[key])
        response = intent.IntentResponse(language=user_input.language)
        response.async_set_error(intent.IntentResponseErrorCode.UNKNOWN, text)
        return conversation.ConversationResult(response=response, conversation_id=chat_log.conversation_id,
                                               continue_conversation=False)


@dataclass
class _TurnState:
    """What one server turn has brought so far."""

    end: TurnEnd | None = None
    streamed: bool = False  # some of the answer's text came
    holding: str = ""  # the holding phrase said (in the user's language)
    calls: dict[str, llm.ToolInput] = field(default_factory=dict)  # by id


def _without_holding(chat_log: conversation.ChatLog, first: int, holding: str) -> None:
    """Take the holding phrase out of this turn's assistant message in the chat log (the history)."""
    if not holding:
        return
    for index in range(first, len(chat_log.content)):
        content = chat_log.content[index]
        if isinstance(content, conversation.AssistantContent) and content.content and content.content.startswith(holding):
            chat_log.content[index] = replace(content, content=content.content.removeprefix(holding).lstrip() or None)
            return
