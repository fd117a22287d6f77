"""The words a home's commands use: its exposed devices' names and its areas, from each linked
Home Assistant, as a prompt for a recogniser that takes one (Whisper's initial prompt).

Whisper reads its prompt as the transcript that came just before. A bare list of names invites
it to recite the list; commands ("Close the hall window.") steer it best (word error rate 0.13 on
the 39 spoken commands of `script/bench commands`, Whisper tiny.en, against 0.33 without a
prompt) but make it copy a whole command it did not hear ("could you switch on the entrance
lights" heard as "Close the kitchen window."): a wrong action. One sentence of prose naming the
devices and areas ("This home has the hall window, AC and garage door, in the hall, garage
and bedroom.") steers it nearly as well (0.20; 22 of the 39 heard word for word,
against 24 with commands and 9 without) and, copied, commands nothing."""

from __future__ import annotations

import re
from collections.abc import Hashable

MAX_NAMES = 60  # devices named in the prompt (Whisper keeps the last 223 tokens of a prompt)
MAX_AREAS = 20
MAX_WORDS = 6  # a longer "name" is not a device's
_NAME = re.compile(r"^[\w][\w .'&+-]*$")


def _clean(names: object, limit: int) -> list[str]:
    """Names as a prompt may hold them: strings of a few words, each once, at most `limit`."""
    if not isinstance(names, list):
        return []
    seen: dict[str, str] = {}
    for name in names:
        if isinstance(name, str) and _NAME.match(name := " ".join(name.split())) and len(name.split()) <= MAX_WORDS:
            seen.setdefault(name.lower(), name)
    return list(seen.values())[:limit]


class Vocabulary:
    """Device and area names per linked Home Assistant (keyed by its link, so a reconnecting
    home's new link keeps its words when the old one goes); `prompt()` joins them all. Updated in
    the event loop, read by the STT thread: the prompt is built on each change and read whole."""

    def __init__(self) -> None:
        self._homes: dict[Hashable, tuple[list[str], list[str]]] = {}
        self._prompt: str | None = None

    def update(self, home: Hashable, names: object, areas: object) -> int:
        """Replace `home`'s words (unusable ones are left out); how many names were kept."""
        kept = _clean(names, MAX_NAMES), _clean(areas, MAX_AREAS)
        self._homes[home] = kept
        self._prompt = self._sentence()
        return len(kept[0])

    def forget(self, home: Hashable) -> None:
        self._homes.pop(home, None)
        self._prompt = self._sentence()

    def prompt(self) -> str | None:
        """One sentence naming the home's devices and areas, or None when no Home Assistant gave any."""
        return self._prompt

    def _sentence(self) -> str | None:
        names = list(dict.fromkeys(n for names, _ in self._homes.values() for n in names))[:MAX_NAMES]
        areas = list(dict.fromkeys(a for _, areas in self._homes.values() for a in areas))[:MAX_AREAS]
        if not names and not areas:
            return None
        devices = f"the {_listed([_spoken(name) for name in names])}" if names else "devices"
        places = f", in the {_listed([_spoken(area) for area in areas])}" if areas else ""
        return f"This home has {devices}{places}."


def _listed(words: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _spoken(name: str) -> str:
    """A name as a transcript writes it mid-sentence: lower case, acronyms ("AC", "TV") kept."""
    return " ".join(word if word.isupper() and len(word) > 1 else word.lower() for word in name.split())
