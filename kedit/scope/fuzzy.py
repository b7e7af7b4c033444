"""Near-miss subject names: the stored subject an input misspells ("Derek Whiteheads", "4 Sagittarius").

Rephrasings made by back-translation often bend the subject's name (zsRE's "Who's Nebajoths Dad?" for
Nebaioth), so the exact linker finds nothing and the stored fact is never scored. When exact linking finds
no stored subject, a span of the input is read as a stored subject's name if it has as many words, each
word is the name's word or a close spelling of it (same first letter, `WORD_RATIO` of its characters),
the whole span is `SPAN_RATIO` alike, and codes (numbers, capitals such as "XVI", "NSR500V") agree
exactly: "Gregory X" is not "Gregory XVI", "Tower Island" not "Flower Island". The two ratios were set on
counterfact-train neighbourhood prompts (another subject's, so every link there is wrong) against 1,000
stored counterfact-train subjects at a time: no false link in 3 x 2,000 prompts.

>>> index = FuzzyNames(["Derek Whitehead", "Gregory XVI", "Flower Island"])
>>> index.spans("What was the name of the Derek Whiteheads team?")
[(25, 41, ['Derek Whitehead'])]
>>> index.spans("Gregory X is a"), index.spans("Tower Island is located in")
([], [])
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from difflib import SequenceMatcher

from graph.entity_linker import fold, normalise

WORD_RATIO = 0.75
SPAN_RATIO = 0.85
MIN_CHARS = 8  # shorter names are too easily near another word
_WORD = re.compile(r"[\w][\w.'’&/-]*[\w]|[\w]")
_CODE = re.compile(r"\b(?:\w*\d\w*|[A-Z]{1,5})\b")


def _codes(text: str) -> set[str]:
    return set(_CODE.findall(text))


def _close(word: str, other: str) -> bool:
    return word == other or (
        word[:1] == other[:1]
        and min(len(word), len(other)) >= 4
        and SequenceMatcher(None, word, other).ratio() >= WORD_RATIO
    )


class FuzzyNames:
    """Stored subject names indexed by the first four letters of their words."""

    def __init__(self, names: Iterable[str]) -> None:
        self._index: dict[str, set[str]] = {}
        for name in names:
            key = normalise(name)
            if len(key) < MIN_CHARS:
                continue
            for word in key.split():
                if len(word) >= 4:
                    self._index.setdefault(word[:4], set()).add(name)

    def spans(self, text: str) -> list[tuple[int, int, list[str]]]:
        """(start, end, [name]) for the best near-miss span of each stored name the text may bend."""
        words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        folded = [fold(text[s:e]) for s, e in words]
        candidates = {n for w in folded if len(w) >= 4 for n in self._index.get(w[:4], ())}
        best: dict[tuple[int, int], tuple[float, str]] = {}
        for name in sorted(candidates):
            key = normalise(name)
            parts = key.split()
            for first in range(len(words) - len(parts) + 1):
                here = folded[first : first + len(parts)]
                if here == parts or not all(_close(w, p) for w, p in zip(here, parts)):
                    continue  # an exact span is the linker's (a possessive or article it did not take)
                start, end = words[first][0], words[first + len(parts) - 1][1]
                span = text[start:end]
                ratio = SequenceMatcher(None, normalise(span), key).ratio()
                if (
                    ratio >= SPAN_RATIO
                    and _codes(span) == _codes(name)
                    and ratio > best.get((start, end), (0, ""))[0]
                ):
                    best[(start, end)] = (ratio, name)
        return [(s, e, [name]) for (s, e), (_, name) in sorted(best.items())]
