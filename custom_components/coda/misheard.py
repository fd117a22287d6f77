"""A command word misheard: small speech recognisers write a command's verb or its "on"/"off" as
a word that sounds alike ("Shot the kitchen window", "Toned the bed light green", "Bim the office
lights to 20%", "Light, soft in the office"), and Home Assistant's agent then matches nothing.
Readings of such a transcript with one unknown word taken for the command word it is closest to
are tried, after the words as heard failed, before the turn goes to the LLM. English only."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator

# a command word, as written or in a form a recogniser puts in its place -> the word to read
COMMAND_WORDS = {
    "turn": "turn", "turned": "turn", "turning": "turn", "switch": "switch", "switched": "switch",
    "set": "set", "dim": "dim", "dimmed": "dim", "brighten": "brighten", "open": "open", "close": "close",
    "shut": "shut", "lower": "lower", "raise": "raise", "make": "make", "making": "make", "off": "off",
    "down": "down", "brighter": "brighter", "dimmer": "dimmer",
}
# words never taken for another: those of a request that are not its command
KEPT = frozenset({
    "the", "and", "you", "can", "could", "would", "want", "are", "all", "for", "with", "this", "that",
    "some", "bit", "little", "lot", "please", "percent", "what", "how", "light", "lights"})
CUTOFF = 0.55  # how alike a heard word and a command word must be written
RHYME_CUTOFF = 0.8  # how alike their rhymes must be ("sound" and "down": a first consonant misheard)
MIN_LETTERS = 3  # shorter words ("in", "on", "up") are left as heard
MAX_READINGS = 6  # readings tried per turn, closest first


def readings(text: str, home_words: Iterable[str]) -> list[str]:
    """Other readings of `text`, each with one word taken for a command word (closest first);
    words of the home's device and area names are kept."""
    kept = KEPT | {word for name in home_words for word in name.lower().split()}
    tokens = re.findall(r"[\w'%]+|[^\w'%]+", text)
    found: list[tuple[float, int, str]] = []
    for index, token in enumerate(tokens):
        word = token.lower()
        if len(word) < MIN_LETTERS or word in kept or not word.isalpha() or COMMAND_WORDS.get(word) == word:
            continue
        for score, replacement in _alike(word):
            found.append((score, index, replacement))
    found.sort(key=lambda item: -item[0])
    texts = []
    for _, index, replacement in found:
        reading = "".join(replacement if i == index else token for i, token in enumerate(tokens))
        if reading not in texts:
            texts.append(reading)
    return texts[:MAX_READINGS]


def _alike(word: str) -> Iterator[tuple[float, str]]:
    """The command words `word` may stand for, and how alike: written alike, or rhyming."""
    if word in COMMAND_WORDS:  # another form of a command word: the word itself
        yield 1.0, COMMAND_WORDS[word]
        return
    written = set(difflib.get_close_matches(word, COMMAND_WORDS, n=2, cutoff=CUTOFF))
    for other in written:
        yield difflib.SequenceMatcher(None, word, other).ratio(), COMMAND_WORDS[other]
    rhyme = _rhyme(word)
    for other in COMMAND_WORDS:
        if other not in written and len(rhyme) >= MIN_LETTERS and _rhyme(other) != other:
            score = difflib.SequenceMatcher(None, rhyme, _rhyme(other)).ratio()
            if score >= RHYME_CUTOFF:
                yield score * CUTOFF, COMMAND_WORDS[other]  # after the words written alike


def _rhyme(word: str) -> str:
    """A word from its first vowel on, "ow" spelled "ou" ("sound" -> "ound", "down" -> "oun")."""
    start = next((i for i, letter in enumerate(word) if letter in "aeiouy"), 0)
    return word[start:].replace("ow", "ou")
