"""What the user may have said, when nothing handled the words as heard: the home's own command
sentences (its exposed devices by domain, its areas' lights), the closest to the transcript by
letters, read by the server's speech recogniser against the audio it transcribed (`POST
/api/heard`). A sentence the audio supports nearly as well as the transcript is tried as the
command ("Make the kitchen lights loose." was "Make the kitchen lights blue."; "Switch, nice,
off." was "Switch the AC off."). Home Assistant's agent still decides what a sentence means, so
only a sentence it handles acts. English only."""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Awaitable, Callable, Iterator

from homeassistant.core import HomeAssistant

from .api import AudioScore
from .brightness_steps import words_of
from .targets import area_names, exposed_entities

_LOGGER = logging.getLogger(__name__)

MAX_SENTENCES = 8  # read against the audio per turn, the closest by letters
# How far below the transcript a sentence may score and still be what was said: per token, and
# over the sentence. On the 47 spoken requests of `script/bench commands` and 30 others (tiny.en),
# the words said scored at most 1.6 per token and 9.1 in all below a wrong transcript; the
# closest sentence to a request for something else scored below both bounds, most by far, the
# nearest by little ("turn on the television" as "Turn on the AC.": 2.02 and 10.1).
MEAN_MARGIN = 1.8
TOTAL_MARGIN = 10.0
MAX_TRIED = 3  # sentences within both margins tried, the likeliest first
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white")
_SWITCHED = ("light", "switch", "fan", "input_boolean", "media_player")

# (heard, sentences) -> the scores of heard and of each sentence; None: no audio to read them against
ReadAgainstAudio = Callable[[str, list[str]], Awaitable[tuple[AudioScore, list[AudioScore]] | None]]


def _named(name: str) -> str:
    """A name as said mid-sentence: lower case, acronyms ("AC", "TV") kept."""
    return " ".join(word if word.isupper() and len(word) > 1 else word.lower() for word in name.split())


def _device_sentences(domain: str, name: str, levels: list[str]) -> Iterator[str]:
    if domain in _SWITCHED:
        for verb in ("turn", "switch"):
            for way in ("on", "off"):
                yield from (f"{verb} {way} the {name}", f"{verb} the {name} {way}")
    if domain == "light":
        for colour in COLOURS:
            yield from (f"turn the {name} {colour}", f"make the {name} {colour}")
        yield from (f"make the {name} brighter", f"make the {name} dimmer", f"dim the {name}",
                    f"dim the {name} a little", f"brighten the {name}", f"turn the {name} up",
                    f"turn the {name} down", f"turn up the {name}", f"turn down the {name}")
        for level in levels:
            yield from (f"set the {name} to {level}%", f"dim the {name} to {level}%")
    elif domain == "cover":
        for verb in ("open", "close", "shut", "lower", "raise"):
            yield f"{verb} the {name}"
        yield from (f"lower the {name} a bit", f"raise the {name} a bit")
        for level in levels:
            yield f"set the {name} to {level}%"
    elif domain == "lock":
        yield from (f"lock the {name}", f"unlock the {name}")


def home_sentences(hass: HomeAssistant, heard: str) -> list[str]:
    """The home's command sentences for a transcript: each exposed device's (by its domain), the
    lights of each area; levels only as the transcript has them (none is made up)."""
    levels = list(dict.fromkeys(re.findall(r"\b(\d{1,3})\s*(?:%|percent)", heard.lower())))
    sentences = [sentence for entity_id, names in exposed_entities(hass).items() for name in names
                 for sentence in _device_sentences(entity_id.split(".", 1)[0], _named(name), levels)]
    for area in area_names(hass):
        place = _named(area)
        sentences += [f"turn on the lights in the {place}", f"turn off the lights in the {place}",
                      f"lights on in the {place}", f"lights off in the {place}"]
    return list(dict.fromkeys(sentence[0].upper() + sentence[1:] + "." for sentence in sentences))


def closest_sentences(heard: str, sentences: list[str]) -> list[str]:
    """The `MAX_SENTENCES` sentences closest to the transcript by letters."""
    matcher = difflib.SequenceMatcher(b=words_of(heard), autojunk=False)

    def likeness(sentence: str) -> float:
        matcher.set_seq1(words_of(sentence))
        return matcher.ratio()

    return sorted(sentences, key=likeness, reverse=True)[:MAX_SENTENCES]


async def said_sentences(hass: HomeAssistant, heard: str, read: ReadAgainstAudio) -> list[str]:
    """The home's sentences the audio supports within both margins of the transcript, likeliest
    first (none when the server kept no audio for it)."""
    candidates = closest_sentences(heard, home_sentences(hass, heard))
    if not candidates or (scores := await read(heard, candidates)) is None:
        return []
    heard_score, sentence_scores = scores
    likely = sorted(zip(sentence_scores, candidates, strict=True), key=lambda pair: pair[0].mean, reverse=True)
    _LOGGER.debug("Heard %r (%s); read against its audio: %s", heard, heard_score, likely)
    return [sentence for score, sentence in likely if heard_score.mean - score.mean <= MEAN_MARGIN
            and heard_score.logprob - score.logprob <= TOTAL_MARGIN][:MAX_TRIED]
