"""TEST DOUBLE of Kyutai STT's end-of-turn head, loaded into a server process by putting this
folder on its PYTHONPATH (Python imports `sitecustomize` at start).

The tiny random-weight STT checkpoints have the head, but its scores are noise; a test that
needs the head to say "the user is done" or "not done" writes the score into the file named by
CODA_TEST_END_OF_TURN (a number from 0 to 1, read at every model step), or "absent" for a
checkpoint without the head. Everything else — the model, its text, its timing — stays real."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

SCORE_FILE = os.environ.get("CODA_TEST_END_OF_TURN")

if SCORE_FILE:
    from wyoming_coda.engines import stt

    last = ["0"]  # the file is rewritten while the model steps: an empty read keeps the last value

    def _score() -> float | None:
        text = Path(SCORE_FILE).read_text().strip() or last[0]
        last[0] = text
        return None if text == "absent" else float(text)

    real_step = stt.SpeechToText._step
    real_init = stt.SpeechToText.__init__

    def _step(self: stt.SpeechToText, inputs: Any, resets: Any) -> Any:
        score = _score()
        self.has_end_of_turn = score is not None
        return [None if out is None else (replace(out[0], end_of_turn=score), out[1])
                for out in real_step(self, inputs, resets)]

    def _init(self: stt.SpeechToText, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self.has_end_of_turn = _score() is not None

    stt.SpeechToText._step = _step  # type: ignore[method-assign]
    stt.SpeechToText.__init__ = _init  # type: ignore[method-assign]
