"""Personality: a profile (name, style, verbosity, tone) injected into the system prompt, that
adapts to explicit feedback ("be shorter", "speak more formally") and persists per user."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .access import private_dir, write_private

VERBOSITY = ("brief", "normal", "detailed")
TONES = ("friendly", "formal", "casual", "playful")

# Instructions addressed to the assistant about how it speaks, and nothing else: each needs a
# verb of speaking (or "your answers", "you're too ...") next to the style word, so ordinary
# commands ("leave the heating on longer", "help me relax") change nothing.
_SPEAK = r"(?:be|answer|reply|respond|speak|talk|sound)"
_YOU_ARE_TOO = r"(?:you(?:'re| are)|your (?:answers?|replies) (?:are|were|is)|that was)\s+(?:way\s+|much\s+)?too"
_FEEDBACK: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(rf"\b{_SPEAK}\s+(?:a bit\s+|more\s+|much\s+)?(?:shorter|briefer|brief(?:ly)?|concise(?:ly)?|short)\b"
                rf"|\bkeep (?:it|your (?:answers|replies)|things) (?:short|brief|shorter|concise)\b"
                rf"|\b(?:talk|speak) less\b|\b(?:shorter|briefer) (?:answers|replies|responses)\b"
                rf"|\b{_YOU_ARE_TOO}\s+(?:long|wordy|verbose|talkative)\b", re.I), "verbosity", "shorter"),
    (re.compile(rf"\b{_SPEAK}\s+(?:a bit\s+)?more\s+(?:detailed|thorough)\b|\b{_SPEAK}\s+in more detail\b"
                rf"|\b(?:longer|more detailed) (?:answers|replies|responses)\b"
                rf"|\b{_YOU_ARE_TOO}\s+(?:short|brief|terse)\b", re.I), "verbosity", "longer"),
    (re.compile(rf"\b{_SPEAK}\s+(?:a bit\s+)?more\s+(?:formal(?:ly)?|professional(?:ly)?|polite(?:ly)?)\b"
                rf"|\b{_SPEAK}\s+formal(?:ly)?\b|\b{_YOU_ARE_TOO}\s+(?:casual|informal)\b", re.I), "tone", "formal"),
    (re.compile(rf"\b{_SPEAK}\s+(?:a bit\s+)?(?:more\s+)?(?:casual(?:ly)?|informal(?:ly)?|relaxed)\b"
                rf"|\b{_SPEAK}\s+less formal(?:ly)?\b|\b{_YOU_ARE_TOO}\s+(?:formal|stiff)\b", re.I), "tone", "casual"),
    (re.compile(rf"\b{_SPEAK}\s+(?:a bit\s+)?(?:more\s+)?(?:fun|funnier|playful|playfully)\b"
                rf"|\b{_YOU_ARE_TOO}\s+(?:serious|boring)\b", re.I), "tone", "playful"),
]


@dataclass(frozen=True)
class Personality:
    """How the assistant speaks."""

    name: str = "Coda"
    style: str = "a helpful voice assistant for the home"
    verbosity: str = "brief"
    tone: str = "friendly"

    def prompt(self) -> str:
        length = {
            "brief": "Answer in one or two short sentences.",
            "normal": "Answer in a few sentences.",
            "detailed": "Give complete, detailed answers.",
        }[self.verbosity]
        return (
            f"You are {self.name}, {self.style}. Your tone is {self.tone}. {length} "
            "Your answers are spoken aloud: no markdown, lists, emoji or code."
        )

    def overridden(self, changes: Mapping[str, str]) -> Personality:
        """This profile with some of `verbosity` / `tone` replaced (ValueError on others)."""
        allowed = {"verbosity": VERBOSITY, "tone": TONES}
        for key, value in changes.items():
            if key not in allowed or value not in allowed[key]:
                choices = ", ".join(f"{k}: {'/'.join(v)}" for k, v in allowed.items())
                raise ValueError(f"personality {key}={value!r} is not one of {choices}")
        return replace(self, **changes)

    def adapt(self, feedback: str) -> Personality | None:
        """The profile after explicit feedback, or None when the text asks for no change."""
        for pattern, field_name, change in _FEEDBACK:
            if not pattern.search(feedback):
                continue
            if field_name == "verbosity":
                index = VERBOSITY.index(self.verbosity) + (-1 if change == "shorter" else 1)
                level = VERBOSITY[max(0, min(len(VERBOSITY) - 1, index))]
                return replace(self, verbosity=level) if level != self.verbosity else None
            return replace(self, tone=change) if change != self.tone else None
        return None


class PersonalityStore:
    """Profiles per user, starting from the configured one, kept in a JSON file."""

    def __init__(self, path: Path, default: Personality) -> None:
        self.path = path
        self.default = default
        self._profiles: dict[str, Personality] = {}
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
            self._profiles = {user: Personality(**profile) for user, profile in stored.items()}

    def get(self, user_id: str) -> Personality:
        return self._profiles.get(user_id, self.default)

    def adapt(self, user_id: str, feedback: str) -> Personality | None:
        """Apply explicit feedback; persists and returns the new profile when it changed."""
        changed = self.get(user_id).adapt(feedback)
        if changed is not None:
            self._profiles[user_id] = changed
            private_dir(self.path.parent)
            data = {user: asdict(profile) for user, profile in self._profiles.items()}
            write_private(self.path, json.dumps(data, indent=1))
        return changed
