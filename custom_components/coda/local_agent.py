"""Local first: Home Assistant's own agent (its whole recognition: fuzzy matching on 2026.2, the
gazetteer fallback on 2026.10, the satellite's area) on a turn's words, in a conversation of its
own so its records stay out of the caller's chat log, after the relative brightness it lacks and
before a light's level without a command it understood (brightness_steps.py); then all three on
readings with a misheard command word (misheard.py), then on the home's own sentences that the
audio supports nearly as well as the transcript (said_sentences.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import chat_session, intent

from .brightness_steps import level_answer, step_answer
from .misheard import readings
from .said_sentences import ReadAgainstAudio, said_sentences
from .targets import area_names, exposed_names


async def local_answer(
    hass: HomeAssistant, text: str, language: str, context: Context, conversation_id: str | None = None,
    device_id: str | None = None, satellite_id: str | None = None, read: ReadAgainstAudio | None = None,
) -> intent.IntentResponse | None:
    """The local answer when one handled the turn on the home's devices (acted on them or
    reported on them); None when the turn is for the LLM. Answers without a device — the time,
    timers, a greeting — go to the LLM too, which has the same intents as tools: Home Assistant
    2026.2's fuzzy matching also answers unrelated sentences ("my name is Ada") with the time.
    `read`: the server's recogniser, reading the home's sentences against the turn's audio."""
    english = language.lower().startswith("en")  # the steps and the readings read English
    if (response := await _handled(hass, text, english, language, context, conversation_id, device_id,
                                   satellite_id)) is not None or not english:
        return response
    async for words in _other_words(hass, text, read):  # only once the words as heard failed
        if (response := await _handled(hass, words, english, language, context, conversation_id, device_id,
                                       satellite_id)) is not None:
            return response
    return None


async def _other_words(hass: HomeAssistant, text: str, read: ReadAgainstAudio | None) -> AsyncIterator[str]:
    """What else the user may have said: readings with a misheard command word, then (asking the
    server only when those failed) the home's sentences the audio supports."""
    for words in readings(text, [*exposed_names(hass), *area_names(hass)]):
        yield words
    if read is not None:
        for words in await said_sentences(hass, text, read):
            yield words


async def _handled(
    hass: HomeAssistant, words: str, english: bool, language: str, context: Context, conversation_id: str | None,
    device_id: str | None, satellite_id: str | None,
) -> intent.IntentResponse | None:
    """The first local answer that handled `words`: the steps first (2026.2's fuzzy matching
    takes "turn up the lights" for "on"), Home Assistant's agent, then a light's level."""
    if english and (response := await step_answer(hass, words, language, context, device_id)) is not None:
        return response
    response = await _agent_answer(hass, words, language, context, conversation_id, device_id, satellite_id)
    if response is None and english:
        response = await level_answer(hass, words, language, context, device_id)
    return response


async def _agent_answer(
    hass: HomeAssistant, text: str, language: str, context: Context, conversation_id: str | None,
    device_id: str | None, satellite_id: str | None,
) -> intent.IntentResponse | None:
    """Home Assistant's agent's answer when it handled `text` on devices."""
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
