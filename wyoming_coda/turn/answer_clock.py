"""Voice to voice for pipeline turns: Home Assistant's Assist pipeline sends the command's audio
to the asr service, its transcript to the handle service and the answer to the tts service, each
on its own connection. The clock links them by their words: the time the server ended a command
(asr), the answer that transcript got (handle), and the first audio of a synthesis of that answer
(tts) — then `voice_to_voice` is observed once per turn."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from ..metrics import Metrics

KEPT_SECONDS = 120.0  # a command or an answer not spoken by then is forgotten
KEPT_ITEMS = 64


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass
class PendingAnswer:
    """The answer to one ended command, as it streams in."""

    ended_at: float  # when the server ended the command (monotonic)
    text: str = ""


class AnswerClock:
    """Ended commands by transcript, their answers by text, until the answer is heard."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._commands: OrderedDict[str, float] = OrderedDict()
        self._answers: list[PendingAnswer] = []

    def command_ended(self, transcript: str, at: float) -> None:
        """The server ended a command with this transcript at `at`."""
        if not transcript.strip():
            return
        self._expire()
        self._commands[_key(transcript)] = at
        while len(self._commands) > KEPT_ITEMS:
            self._commands.popitem(last=False)

    def answering(self, transcript: str) -> PendingAnswer | None:
        """A turn answers this transcript: its answer to fill in (None: no command ended with
        these words, e.g. typed text)."""
        ended_at = self._commands.pop(_key(transcript), None)
        if ended_at is None:
            return None
        answer = PendingAnswer(ended_at)
        self._answers = [*self._answers, answer][-KEPT_ITEMS:]
        return answer

    def first_audio(self, text: str) -> None:
        """The first audio of a synthesis of `text` (whole, or as much as has streamed) went out:
        voice to voice for the oldest answer it is the start of (or that is its start)."""
        self._expire()
        spoken = _key(text)
        for answer in self._answers:
            written = _key(answer.text)
            if spoken and written and (written.startswith(spoken) or spoken.startswith(written)):
                self._answers.remove(answer)
                self._metrics.observe("voice_to_voice", time.monotonic() - answer.ended_at)
                return

    def _expire(self) -> None:
        limit = time.monotonic() - KEPT_SECONDS
        for key in [k for k, at in self._commands.items() if at < limit]:
            del self._commands[key]
        self._answers = [a for a in self._answers if a.ended_at >= limit]
