"""Entity linking: text -> canonical entity name, by normalised names and aliases, then (optionally) by
embedding similarity with an injected `embed(list[str]) -> unit vectors` function.

>>> linker = EntityLinker()
>>> linker.add("United States of America", ["USA", "the United States"])
>>> linker.link("USA"), linker.link("The United States")
('United States of America', 'United States of America')
>>> linker.mentions("Who is the head of state of the USA?")
['United States of America']
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

import numpy as np

Embed = Callable[[list[str]], np.ndarray]
_SPACE = re.compile(r"\s+")
# a word for span matching: letters/digits with inner marks ("O'Neil", "Jean-Paul", "U.S", "3.5")
_TOKEN = re.compile(r"[\w][\w.'’&-]*[\w]|[\w]")
_EDGE_PUNCT = " \t\n.,;:!?\"'()[]{}"
SHORT = 3  # names this short or shorter (after normalising) must match case-sensitively
# Real alias lists hold ccTLDs like "is", "in", "it": never read a function word as an entity name.
FUNCTION_WORDS = frozenset(
    "a an and are as at be by did do does for from had has have he her his in is it its me my no not of on "
    "or our she so than that the their them they this to us was we were what when where which who whom "
    "whose why will with you your".split()
)


def normalise(text: str) -> str:
    """Case-folded, accents kept, whitespace collapsed, outer punctuation and a leading 'the' dropped."""
    folded = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip(_EDGE_PUNCT)
    return folded[4:] if folded.startswith("the ") else folded


class EntityLinker:
    def __init__(self, embed: Embed | None = None, threshold: float = 0.8, max_words: int = 12) -> None:
        self.embed = embed
        self.threshold = threshold
        self.max_words = max_words
        self._names: dict[str, set[str]] = {}
        self._short: dict[str, set[str]] = {}
        self._canonical: list[str] = []
        self._known: set[str] = set()
        self._vectors: np.ndarray | None = None

    def add(self, canonical: str, aliases: Iterable[str] = ()) -> None:
        if canonical not in self._known:
            self._known.add(canonical)
            self._canonical.append(canonical)
        for name in (canonical, *aliases):
            key = normalise(name)
            if key in FUNCTION_WORDS:
                continue
            if len(key) > SHORT:
                self._names.setdefault(key, set()).add(canonical)
            elif key:  # "IS", "US", "HR": matched with their exact case only, never as the word "is"
                self._short.setdefault(name.strip(), set()).add(canonical)

    def __len__(self) -> int:
        return len(self._canonical)

    def candidates(self, text: str) -> list[str]:
        """Every canonical entity whose name or alias matches `text` (normalised; short names exactly)."""
        key = normalise(text)
        if len(key) > SHORT:
            return sorted(self._names.get(key, ()))
        return sorted(self._short.get(text.strip(" \t\n.,;:!?\"'()[]{}"), ()))

    def link(self, text: str) -> str | None:
        """The canonical name for `text`, or None. Exact name/alias first, then embedding similarity."""
        exact = self.candidates(text)
        if exact:
            return exact[0] if len(exact) == 1 or text not in exact else text
        if self.embed is None or not self._canonical or not text.strip():
            return None
        if self._vectors is None or len(self._vectors) < len(self._canonical):
            done = 0 if self._vectors is None else len(self._vectors)
            new = np.asarray(self.embed(self._canonical[done:]), dtype=np.float32)
            self._vectors = new if self._vectors is None else np.vstack([self._vectors, new])
        query = np.asarray(self.embed([text]), dtype=np.float32)[0]
        scores = self._vectors @ query
        best = int(np.argmax(scores))
        return self._canonical[best] if scores[best] >= self.threshold else None

    def spans(self, text: str) -> list[tuple[int, int, list[str]]]:
        """Entity mentions in `text` as (start, end, candidate canonical names): longest word spans
        first, no overlaps, in order of appearance. Words are split at spaces and punctuation, so
        "Andy Kershaw, who" and "Kershaw's" find "Kershaw"; a possessive "'s" is left out of the span.

        >>> linker = EntityLinker(); linker.add("Calder Freeway")
        >>> linker.spans("One can get to Calder Freeway's end by")
        [(15, 29, ['Calder Freeway'])]
        """
        words = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        taken = [False] * len(words)
        found: list[tuple[int, int, list[str]]] = []
        for size in range(min(self.max_words, len(words)), 0, -1):
            for first in range(len(words) - size + 1):
                if any(taken[first : first + size]):
                    continue
                start, end = words[first][0], words[first + size - 1][1]
                span = text[start:end]
                if span.endswith(("'s", "’s")):
                    span, end = span[:-2], end - 2
                names = self.candidates(span) if span.strip() else []
                if names:
                    found.append((start, end, names))
                    taken[first : first + size] = [True] * size
        return sorted(found)

    def mentions(self, text: str) -> list[str]:
        """Entities named in `text` (longest word spans first, no overlaps), in order of appearance."""
        words = text.split()
        taken = [False] * len(words)
        found: list[tuple[int, str]] = []
        for size in range(min(self.max_words, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                if any(taken[start : start + size]):
                    continue
                span = " ".join(words[start : start + size])
                names = self.candidates(span)
                if not names and span.endswith("'s"):
                    names = self.candidates(span[:-2])
                if names:
                    found.append((start, names[0]))
                    taken[start : start + size] = [True] * size
        return [name for _, name in sorted(found)]
