"""Conversation agent: each turn runs on the server's `handle` service; the tools of Home
Assistant's LLM API travel with the request and every tool call the server asks for runs here,
through that API, so only exposed entities can be reached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT, MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import intent, llm
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.translation import async_get_translations

from .api import CodaConnectionError, CodaTurn, TextDelta, ToolCallRequest, TurnEnd
from .const import CONF_MEMORY, CONF_TONE, CONF_VERBOSITY, DOMAIN, MAX_TOOL_ROUNDS, SERVER_DEFAULT
from .coordinator import CodaConfigEntry
from .entity import CodaEntity
from .llm_tools import plain_json, tool_definitions

FALLBACK_MESSAGES = {  # when the translations cannot be read
    "server_unavailable": "The Coda Voice server cannot be reached right now.",
    "too_many_tool_calls": "The answer needed more tool calls than allowed.",
    "request_refused": "The Coda Voice server could not take that request.",
}


async def async_setup_entry(
    hass: HomeAssistant, entry: CodaConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_entities([CodaConversationEntity(entry)])


def _tool_result(content: conversation.ToolResultContent) -> Any:
    """The tool's answer of a chat log entry as plain JSON."""
    result = getattr(content, "result", None)  # from 2026.10; `tool_result` before
    return plain_json(result if result is not None else content.tool_result)


class CodaConversationEntity(conversation.ConversationEntity, conversation.AbstractConversationAgent, CodaEntity):
    """The server's LLM as a Home Assistant conversation agent."""

    _attr_name = None
    _attr_supports_streaming = True

    def __init__(self, entry: CodaConfigEntry) -> None:
        super().__init__(entry, "conversation")
        self.entry = entry
        # CONTROL only when the server's turns can act: a moshi_only server without an LLM cannot
        if entry.options.get(CONF_LLM_HASS_API) and entry.runtime_data.server.device_control:
            self._attr_supported_features = conversation.ConversationEntityFeature.CONTROL

    @property
    def supported_languages(self) -> list[str] | Literal["*"]:
        return MATCH_ALL

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        conversation.async_set_agent(self.hass, self.entry, self)

    async def async_will_remove_from_hass(self) -> None:
        conversation.async_unset_agent(self.hass, self.entry)
        await super().async_will_remove_from_hass()

    def _request_context(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
    ) -> dict[str, Any]:
        """What the server reads from a transcript's context (docs/protocol.md)."""
        options = self.entry.options
        context: dict[str, Any] = {
            "conversation_id": chat_log.conversation_id,
            "memory": options.get(CONF_MEMORY, True),
        }
        if user_id := user_input.context.user_id:
            context["user_id"] = user_id
        if user_input.device_id:
            context["device_id"] = user_input.device_id
        if chat_log.content and isinstance(chat_log.content[0], conversation.SystemContent):
            context["extra_system_prompt"] = chat_log.content[0].content  # the prompt plus the exposed entities
        if chat_log.llm_api is not None:
            context["tools"] = tool_definitions(chat_log.llm_api)
        personality = {key: options[key] for key in (CONF_VERBOSITY, CONF_TONE)
                       if options.get(key, SERVER_DEFAULT) != SERVER_DEFAULT}
        if personality:
            context["personality"] = personality
        return context

    async def _async_handle_message(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
    ) -> conversation.ConversationResult:
        options = self.entry.options
        try:
            await chat_log.async_provide_llm_data(
                user_input.as_llm_context(DOMAIN), options.get(CONF_LLM_HASS_API), options.get(CONF_PROMPT),
                user_input.extra_system_prompt,
            )
        except conversation.ConverseError as err:
            return err.as_conversation_result()

        client = self.entry.runtime_data.client
        end: TurnEnd | None = None
        try:
            context = self._request_context(user_input, chat_log)
            async with client.turn(user_input.text, user_input.language, context) as turn:
                for _ in range(MAX_TOOL_ROUNDS + 1):
                    ends: list[TurnEnd] = []
                    async for _content in chat_log.async_add_delta_content_stream(
                        user_input.agent_id, _deltas(turn, ends)
                    ):
                        pass
                    if ends:
                        end = ends[0]
                        break
                    if chat_log.unresponded_tool_results:
                        last = chat_log.content[-1]
                        assert isinstance(last, conversation.ToolResultContent)
                        await turn.send_tool_result(last.tool_call_id, _tool_result(last))
        except CodaConnectionError as err:
            self.coordinator.async_set_update_error(err)  # unavailable until the server answers again
            return await self._error_result(user_input, chat_log, "server_unavailable")
        if end is None:
            return await self._error_result(user_input, chat_log, "too_many_tool_calls")
        if end.refused:  # a request the server could not take: said in the user's language
            return await self._error_result(user_input, chat_log, "request_refused")
        if not end.handled:
            return await self._error_result(user_input, chat_log, None, end.text)
        return conversation.async_get_result_from_chat_log(user_input, chat_log)

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


async def _deltas(turn: CodaTurn, ends: list[TurnEnd]) -> AsyncIterator[conversation.AssistantContentDeltaDict]:
    """One assistant message for the chat log: the server's text until a tool call (which Home
    Assistant then runs) or the end of the turn (appended to `ends`)."""
    yield {"role": "assistant"}
    streamed = False
    async for event in turn.events():
        if isinstance(event, TextDelta):
            streamed = True
            yield {"content": event.text}
        elif isinstance(event, ToolCallRequest):
            yield {"tool_calls": [llm.ToolInput(id=event.id, tool_name=event.name, tool_args=event.arguments)]}
        elif isinstance(event, TurnEnd):
            if event.handled and event.text and not streamed:
                yield {"content": event.text}
            ends.append(event)
