"""Home Assistant's own agent first (local first): its whole recognition (fuzzy matching on
2026.2, the gazetteer fallback on 2026.10, the satellite's area) on a turn's words, in a
conversation of its own so its records stay out of the caller's chat log."""

from __future__ import annotations

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import chat_session, intent


async def local_answer(
    hass: HomeAssistant, text: str, language: str, context: Context, conversation_id: str | None = None,
    device_id: str | None = None, satellite_id: str | None = None,
) -> intent.IntentResponse | None:
    """Home Assistant's answer when its agent handled the turn on the home's devices (it acted on
    them or reported on them); None when the turn is for the LLM. Answers without a device —
    the time, timers, a greeting — go to the LLM too, which has the same intents as tools:
    Home Assistant 2026.2's fuzzy matching also answers unrelated sentences ("my name is Ada")
    with the time."""
    session = chat_session.current_session.get()
    try:
        result = await conversation.async_converse(
            hass, text, conversation_id, context, language, agent_id=conversation.HOME_ASSISTANT_AGENT,
            device_id=device_id, satellite_id=satellite_id,
        )
    finally:
        chat_session.current_session.set(session)  # the caller's chat session, as it was
    response = result.response
    if response.response_type is intent.IntentResponseType.ERROR or not response.success_results:
        return None
    return response


def speech_of(response: intent.IntentResponse) -> str:
    """The plain-text answer of an intent response ("" when it has none)."""
    return str(response.speech.get("plain", {}).get("speech", ""))
