"""The memory actions against a real server: what the server learnt in conversations through
the Coda agent, per Home Assistant user (satellites without a user share the household memory),
listed and erased by an administrator; the next turn's prompt no longer carries what was erased."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from homeassistant.auth.models import User
from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import ServiceValidationError, Unauthorized

from custom_components.coda.const import DOMAIN, HOUSEHOLD

from .common import setup_coda

AGENT = "conversation.coda_voice"


async def _say(hass: HomeAssistant, text: str, user: User | None) -> None:
    await conversation.async_converse(hass, text, None, Context(user_id=user.id if user else None), language="en",
                                      agent_id=AGENT)


async def _call(hass: HomeAssistant, service: str, user: User, **data: Any) -> Any:
    return await hass.services.async_call(DOMAIN, service, data, blocking=True, return_response=True,
                                          context=Context(user_id=user.id))


def _system_prompt(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "system")


async def test_memories_are_listed_and_erased_per_user(
    hass: HomeAssistant, coda_server: Any, ollama: Any, hass_admin_user: User, hass_read_only_user: User,
) -> None:
    await setup_coda(hass, coda_server)
    await _say(hass, "remember that the spare key is under the blue pot", hass_admin_user)
    await _say(hass, "my name is Ada", hass_admin_user)
    await _say(hass, "i love jazz", None)  # a satellite: no user

    for _ in range(100):  # the server learns after it has answered
        listed = await _call(hass, "list_memories", hass_admin_user)
        if len(listed["memories"]) == 2 and HOUSEHOLD in {u["user_id"] for u in listed["users"]}:
            break
        await asyncio.sleep(0.1)
    assert listed["user_id"] == hass_admin_user.id and listed["user_name"] == hass_admin_user.name
    texts = {m["text"]: m["id"] for m in listed["memories"]}
    assert set(texts) == {"The spare key is under the blue pot", "The user's name is Ada."}
    assert listed["conversation_turns"] == 4
    users = {u["user_id"]: u for u in listed["users"]}
    assert users[hass_admin_user.id]["memories"] == 2 and users[hass_admin_user.id]["user_name"] == hass_admin_user.name
    assert users[HOUSEHOLD]["memories"] == 1 and users[HOUSEHOLD]["user_name"] is None
    household = await _call(hass, "list_memories", hass_admin_user, user_id=HOUSEHOLD)
    assert [m["text"] for m in household["memories"]] == ["The user likes jazz."]

    # what is remembered reaches the LLM for this user only
    ollama.requests.clear()
    await _say(hass, "where is the spare key", hass_admin_user)
    assert "The spare key is under the blue pot" in _system_prompt(ollama.requests[-1])
    await _say(hass, "where is the spare key", None)
    assert "blue pot" not in _system_prompt(ollama.requests[-1])

    # forget one fact
    answer = await _call(hass, "forget_memory", hass_admin_user, memory_id=texts["The spare key is under the blue pot"])
    assert answer == {"user_id": hass_admin_user.id, "forgotten": 1}
    listed = await _call(hass, "list_memories", hass_admin_user)
    assert [m["text"] for m in listed["memories"]] == ["The user's name is Ada."]
    ollama.requests.clear()
    await _say(hass, "where is the spare key", hass_admin_user)
    assert "blue pot" not in _system_prompt(ollama.requests[-1])
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "forget_memory", hass_admin_user, memory_id=texts["The spare key is under the blue pot"])
    assert err.value.translation_key == "unknown_memory"

    # forget everything about the household; the admin's own memory stays
    answer = await _call(hass, "forget_memories", hass_admin_user, user_id=HOUSEHOLD)
    assert answer == {"user_id": HOUSEHOLD, "forgotten": 1}
    assert (await _call(hass, "list_memories", hass_admin_user, user_id=HOUSEHOLD))["memories"] == []
    assert len((await _call(hass, "list_memories", hass_admin_user))["memories"]) == 1

    # another user's memory is an administrator's business only
    with pytest.raises(Unauthorized):
        await _call(hass, "list_memories", hass_read_only_user, user_id=hass_admin_user.id)


async def test_memory_actions_report_a_server_without_memory(
    hass: HomeAssistant, coda_server_factory: Any, hass_admin_user: User,
) -> None:
    from homeassistant.exceptions import HomeAssistantError

    await setup_coda(hass, coda_server_factory("--no-memory"))
    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "list_memories", hass_admin_user)
    assert err.value.translation_key == "memory_refused"
    assert "memory is off on this server" in str(err.value.translation_placeholders)


async def test_memory_actions_need_a_loaded_entry(hass: HomeAssistant, hass_admin_user: User) -> None:
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, DOMAIN, {})
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "list_memories", hass_admin_user)
    assert err.value.translation_key == "no_entry"
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "forget_memories", hass_admin_user, config_entry_id="nope")
    assert err.value.translation_key == "unknown_entry"
