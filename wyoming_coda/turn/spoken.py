"""What an LLM answer may say aloud: never JSON, a tool result or code (small models echo tool
results and write calls as text), always something (a summary of what the tools did, or an
honest "I couldn't find…")."""

from __future__ import annotations

from typing import Any

from ..llm.base import ToolCall, bare_name

NO_ANSWER = "Sorry, I have no answer to that."
DONE = "Done."
NOT_CARRIED_OUT = "Sorry, I couldn't carry that out."
ONE_MOMENT = "One moment…"

# Home Assistant's intent tools: what a successful call did, for a summary
_DID = {"HassTurnOn": "turned on", "HassTurnOff": "turned off", "HassLightSet": "set", "HassSetPosition": "set",
        "HassOpenCover": "opened", "HassCloseCover": "closed", "HassToggle": "toggled"}


class Unspoken:
    """Removes what must never be spoken from streamed text: JSON objects and arrays (a tool
    result the model echoes, a call it wrote as text), code (fenced or inline) and markdown's
    emphasis and headings, wherever they start, across chunk boundaries."""

    def __init__(self) -> None:
        self.depth = 0  # open { / [ of the JSON being skipped
        self.in_string = self.escaped = False
        self.fence = False  # inside ``` ... ```
        self.ticks = 0  # backticks in a row
        self._at_word_start = True

    def feed(self, text: str) -> str:
        out: list[str] = []
        for char in text:
            if char in "*#":  # markdown emphasis and headings: spoken answers have none
                continue
            if char == "`":
                self.ticks += 1
                if self.ticks == 3:
                    self.fence, self.ticks = not self.fence, 0
                continue
            self.ticks = 0
            if self.fence:
                continue
            if self.depth:
                self._skip_json(char)
                continue
            if char == "{" or (char == "[" and self._at_word_start):
                self.depth = 1
                continue
            out.append(char)
            self._at_word_start = char.isspace()
        return "".join(out)

    def _skip_json(self, char: str) -> None:
        if self.in_string:
            self.escaped = not self.escaped and char == "\\"
            self.in_string = self.escaped or char != '"'
        elif char == '"':
            self.in_string = True
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1


def failed(result: Any, error: str | None) -> bool:
    """Whether a tool call failed: an error, or a result that says so (Home Assistant's intent
    responses of type `error`, `success: false`)."""
    if error:
        return True
    if isinstance(result, dict):
        return result.get("response_type") == "error" or result.get("success") is False or "error" in result
    return False


def summary(call: ToolCall, result: Any) -> str:
    """What a successful tool call did, in words: Home Assistant's own speech for the intent where
    it gives one, else what was done to which devices, else "Done." """
    if not isinstance(result, dict):
        return DONE
    speech = ((result.get("speech") or {}).get("plain") or {}).get("speech")
    if isinstance(speech, str) and speech.strip():
        return speech.strip()
    targets = (result.get("data") or {}).get("success") or []
    names = [str(t["name"]) for t in targets  # the devices (Home Assistant also lists the area they were in)
             if isinstance(t, dict) and t.get("name") and t.get("type", "entity") == "entity"]
    verb = _DID.get(bare_name(call.name))
    if verb and names:
        return f"Done, {verb} {_joined(names)}."
    if "response_type" not in result and (facts := _facts(result)):  # a tool that reports (the time, say)
        return facts
    return DONE


def _facts(data: dict[str, Any]) -> str:
    """A report's plain values as words ("time 17:04, weekday Friday"); "" when it has none."""
    words: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            words += [part for part in [_facts(value)] if part]
        elif isinstance(value, str | int | float) and not isinstance(value, bool) and key not in ("success", "id"):
            words.append(f"{key.replace('_', ' ')} {value}")
    text = ", ".join(words[:6])
    return text if not text or text.endswith(".") else text + "."


def not_found(call: ToolCall) -> str:
    """The honest answer to a call whose target matched nothing."""
    args = call.arguments
    name, area = args.get("name"), args.get("area")
    if isinstance(name, str) and name.strip():
        where = f" in the {area}" if isinstance(area, str) and area.strip() else ""
        return f"I couldn't find a device called {name.strip()}{where}."
    if isinstance(area, str) and area.strip():
        return f"I couldn't find that in the {area.strip()}."
    return NOT_CARRIED_OUT


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


CORRECTION = ("That call matched no device. Call the tool once more with a name from the error's list of "
              "names, or, if none of them is what the user meant, say that you could not find it.")
REWRITE = ("That tool call could not be read. Call the tool again as valid JSON with only the arguments the "
           "tool declares, or answer in words.")
