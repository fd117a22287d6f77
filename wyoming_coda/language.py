"""Plain text: the language of a short text, from its most common words (how the server picks a
turn's answer language, and so its voice, when the client does not say which; docs/protocol.md),
and its complete sentences (where speech engines may start speaking)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_COMMON = {
    "en": "the a an and is are was to of in on it you i me my what how please turn can this that with for "
          "do does not be your it's i'm there here hello hi thanks thank",
    "fr": "le la les un une des et est sont à de du au en dans je tu il elle nous vous mon ma mes ton "
          "quelle quel quoi comment s'il plaît allume éteins peux pas ce cette c'est qui que sur pour avec bonjour salut merci bonsoir oui non",
    "de": "der die das ein eine und ist sind zu von im mit ich du er sie wir ihr mein bitte wie was nicht "
          "schalte mach kannst hallo danke guten ja nein",
    "es": "el la los las un una y es son de del en con yo tú él ella nosotros mi por favor qué cómo "
          "enciende apaga puedes hola gracias buenos sí",
    "it": "il lo la gli le un una e è sono di del in con io tu lui lei noi mio per favore che come accendi "
          "spegni puoi ciao grazie buongiorno sì",
}
COMMON_WORDS = {language: frozenset(words.split()) for language, words in _COMMON.items()}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def detect_language(text: str, choices: Sequence[str]) -> str | None:
    """The language among `choices` whose common words `text` uses most, or None when it
    cannot tell (no common word, or a tie)."""
    words = _WORD.findall(text.lower())
    scores = sorted(((sum(w in COMMON_WORDS.get(c, ()) for w in words), c) for c in choices), reverse=True)
    if not scores or scores[0][0] == 0 or (len(scores) > 1 and scores[0][0] == scores[1][0]):
        return None
    return scores[0][1]


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n+")


def split_sentences(text: str) -> tuple[list[str], str]:
    """Complete sentences in `text` and the unfinished rest."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        sentence = text[start:match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    return sentences, text[start:]
