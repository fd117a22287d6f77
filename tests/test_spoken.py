"""What an answer may say aloud: the filter that keeps JSON and code out of speech, the summary
of what tools did, the honest not-found answer."""

from __future__ import annotations

import pytest

from wyoming_coda.llm.base import ToolCall
from wyoming_coda.turn.spoken import DONE, NOT_CARRIED_OUT, Unspoken, failed, not_found, summary

ECHO = '{"speech": {}, "response_type": "action_done", "data": {"success": [{"name": "Bed {Light}"}]}}'


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_json_and_code_are_never_spoken_whatever_the_chunking(size: int) -> None:
    text = f"Sure! {ECHO} The light is on. Run ```print('{{x}}')``` or `ls`. [1, 2] done"
    unspoken = Unspoken()
    spoken = "".join(unspoken.feed(text[i:i + size]) for i in range(0, len(text), size))
    assert spoken == "Sure!  The light is on. Run  or ls.  done"


def test_markdown_is_not_read_out() -> None:
    assert Unspoken().feed("## Lights\n**Kitchen** is *on*.") == " Lights\nKitchen is on."


def test_plain_words_pass_untouched() -> None:
    unspoken = Unspoken()
    assert unspoken.feed("It's 20°C [in the] kitchen, isn't it?") == "It's 20°C  kitchen, isn't it?"
    assert Unspoken().feed("Hello there.") == "Hello there."


def test_summary_of_home_assistant_results() -> None:
    turn_on = ToolCall("intent__HassTurnOn", {"name": "kitchen"})
    result = {"speech": {}, "response_type": "action_done",
              "data": {"success": [{"name": "Kitchen", "type": "area"}, {"name": "Kitchen Lights", "type": "entity"},
                                   {"name": "Bed Light"}], "failed": []}}
    assert summary(turn_on, result) == "Done, turned on Kitchen Lights and Bed Light."
    spoken = {"speech": {"plain": {"speech": "The timer is set."}}, "response_type": "action_done"}
    assert summary(ToolCall("HassStartTimer", {}), spoken) == "The timer is set."
    assert summary(ToolCall("get_current_time", {}), {"time": "10:00", "timezone": "UTC"}) == "time 10:00, timezone UTC."
    report = {"success": True, "result": {"date": "2026-12-05", "weekday": "Saturday"}}
    assert summary(ToolCall("llm__GetDateTime", {}), report) == "date 2026-12-05, weekday Saturday."
    assert summary(ToolCall("HassNevermind", {}), {"response_type": "action_done", "data": {}}) == DONE


def test_failures_and_the_honest_answer() -> None:
    assert failed({"error": "MatchFailedError", "error_text": "no"}, None)
    assert failed({"response_type": "error"}, None) and failed(None, "timeout")
    assert not failed({"response_type": "action_done"}, None)
    assert not_found(ToolCall("HassTurnOn", {"name": "entrance lights"})) == \
        "I couldn't find a device called entrance lights."
    assert not_found(ToolCall("HassTurnOn", {"name": "light", "area": "attic"})) == \
        "I couldn't find a device called light in the attic."
    assert not_found(ToolCall("HassTurnOn", {"area": "attic"})) == "I couldn't find that in the attic."
    assert not_found(ToolCall("HassTurnOn", {})) == NOT_CARRIED_OUT
