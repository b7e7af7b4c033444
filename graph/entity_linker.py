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

import bisect
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


# words that join the parts of one name ("Karl Johann of Liechtenstein") or open a question ("How'd X die?")
_CONNECTORS = frozenset("of de von van der du la le di da del".split())
_OPENERS = FUNCTION_WORDS | frozenset("how how'd name tell give list".split())
PARTIAL_PREFIX = 5  # a word this long or longer matches a longer or shorter form ("Mechthildi", "Austrian")
PARTIAL_MAX = 4  # a part of a name shared by more entities than this links to none of them


def _word(token: str) -> str:
    return re.sub(r"['’]s$", "", fold(token))


def _same_word(a: str, b: str) -> bool:
    short, long = sorted((a, b), key=len)
    return a == b or (len(short) >= PARTIAL_PREFIX and long.startswith(short) and len(long) - len(short) <= 2)


# Latin accents and dash variants do not tell names apart ("Angel Rosa" is "Ángel Rosa", "Championships -
# men's singles" is "Championships – men's singles": KnowEdit's aliases, search engines' ASCII folding).
# Only the Latin diacritical-mark blocks are dropped: the marks of other scripts carry vowels.
_MARKS = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF))
_FOLD: dict[int, str | None] = {cp: None for lo, hi in _MARKS for cp in range(lo, hi + 1)}
_FOLD |= {ord(dash): "-" for dash in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"}


def fold(text: str) -> str:
    """`text` case-folded with Latin accents dropped and dashes made hyphens (NFKD: "ﬁ" is "fi").

    >>> fold("Ángel Rosa – Inga Ålenius")
    'angel rosa - inga alenius'
    """
    return unicodedata.normalize("NFKD", text).casefold().translate(_FOLD)


def normalise(text: str) -> str:
    """Folded (`fold`), whitespace collapsed, outer punctuation and a leading 'the' dropped."""
    folded = _SPACE.sub(" ", fold(text)).strip(_EDGE_PUNCT)
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
        self._words: dict[str, set[str]] | None = None  # a name's word -> names holding it (built on use)
        self._sorted_words: list[str] = []

    def add_names(self, names: Iterable[str]) -> None:
        """`add` for many names with no aliases (a store's subjects and objects), normalised in one pass:
        a store of 100k names links from its first query without a second's wait."""
        new = [n for n in dict.fromkeys(names) if n not in self._known and "\x00" not in n]
        self._known.update(new)
        self._canonical += new
        # one fold and whitespace pass over all names joined by NUL (a starter: nothing composes across
        # it, and no name holds one) instead of one per name
        joined = _SPACE.sub(" ", fold("\x00".join(new)))
        for name, key in zip(new, joined.split("\x00")):
            key = key.strip(_EDGE_PUNCT)
            key = key[4:] if key.startswith("the ") else key
            if key in FUNCTION_WORDS:
                continue
            if len(key) > SHORT:
                self._names.setdefault(key, set()).add(name)
                if self._words is not None:
                    self._index_words(key)
            elif key:
                self._short.setdefault(name.strip(), set()).add(name)

    def add(self, canonical: str, aliases: Iterable[str] = ()) -> None:
        names: tuple[str, ...] = tuple(aliases)
        if canonical not in self._known:  # a name already known is not normalised again
            self._known.add(canonical)
            self._canonical.append(canonical)
            names = (canonical, *names)
        for name in names:
            key = normalise(name)
            if key in FUNCTION_WORDS:
                continue
            if len(key) > SHORT:
                self._names.setdefault(key, set()).add(canonical)
                if self._words is not None:
                    self._index_words(key)
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

    # -- a name named in part ("Who was Archduchess Mechthildi's Austrian father?") --------------------
    def _index_words(self, key: str) -> None:
        words = [w for w in _TOKEN.findall(key) if w not in _CONNECTORS and w not in FUNCTION_WORDS]
        if len(words) < 2:  # a one-word name is matched whole or not at all
            return
        assert self._words is not None
        for word in words:
            if word not in self._words:
                self._words[word] = set()
                self._sorted_words = []
            self._words[word].add(key)

    @staticmethod
    def _first(key: str) -> str:
        return next(w for w in _TOKEN.findall(key) if w not in _CONNECTORS and w not in FUNCTION_WORDS)

    def _keys_with(self, word: str) -> tuple[set[str], set[str]]:
        """(names holding `word`, names holding a longer or shorter form of it: a shared stem of 5+ letters
        that differs by at most two letters, "Mechthildi" / "Mechthildis")."""
        assert self._words is not None
        exact = set(self._words.get(word, ()))
        variants: set[str] = set()
        for cut in range(max(PARTIAL_PREFIX, len(word) - 2), len(word)):
            variants |= self._words.get(word[:cut], set())
        if len(word) >= PARTIAL_PREFIX:
            if not self._sorted_words:
                self._sorted_words = sorted(self._words)
            at = bisect.bisect_right(self._sorted_words, word)
            while at < len(self._sorted_words) and self._sorted_words[at].startswith(word):
                if _same_word(word, self._sorted_words[at]):
                    variants |= self._words[self._sorted_words[at]]
                at += 1
        return exact, variants

    def partial_spans(self, text: str) -> list[tuple[int, int, list[str]]]:
        """Runs of capitalised words that name a stored multi-word name in part, as `spans` gives them:
        every word of the run is a word of the name (or a longer or shorter form of it: "Mechthildi",
        "Austrian"), so "Charlotte" and "Schaumburg-Lippe" name "Charlotte of Schaumburg-Lippe" but
        "Charlotte Rampling" does not. A single word must be the name's first, spelt alike ("Green" does
        not name "Peter Green", nor "State" "Elk State Park", nor "Adriano" "Adrian I"); several words
        must hold one spelt alike. A run that fits more than `PARTIAL_MAX` names links to none.
        For texts where `spans` finds nothing: paraphrases that spell a name differently.

        >>> linker = EntityLinker(); linker.add("Archduchess Mechthildis of Austria")
        >>> linker.partial_spans("Who was Archduchess Mechthildi's Austrian father?")
        [(8, 41, ['Archduchess Mechthildis of Austria'])]
        >>> linker.partial_spans("Who was Archduchess Sophie's father?")
        []
        """
        runs: list[list[re.Match]] = []
        for m in _TOKEN.finditer(text):
            word = m.group()
            # a number continues a name ("Windows 98") but does not start one
            opener = _word(word) in _OPENERS and len(word) > 1  # "A. C. Green": an initial is a name's part
            if (word[:1].isupper() or word[:1].isdigit() and runs and runs[-1]) and not opener:
                if (
                    runs
                    and runs[-1]
                    and text[runs[-1][-1].end() : m.start()].strip() in ("", ".", *_CONNECTORS)
                ):
                    runs[-1].append(m)
                else:
                    runs.append([m])
            elif word.casefold() not in _CONNECTORS and runs and runs[-1]:
                runs.append([])
        found: list[tuple[int, int, list[str]]] = []
        if not any(runs):
            return found
        if self._words is None:  # built on the first text with a capitalised run (once)
            self._words, self._sorted_words = {}, []
            for key in self._names:
                self._index_words(key)
        for run in filter(None, runs):
            words = [_word(m.group()) for m in run if m.group().casefold() not in _CONNECTORS]
            if not any(len(w) >= 4 and not w.isdigit() for w in words):
                continue
            found_words = [self._keys_with(w) for w in words]
            if len(words) == 1:  # one word alone names a name by its first word, spelt as the name spells it
                keys = {k for k in found_words[0][0] if self._first(k) == words[0]}
            else:  # every word is the name's, one at least spelt as the name spells it
                keys = set.intersection(*(exact | variants for exact, variants in found_words))
                keys &= set().union(*(exact for exact, _ in found_words))
            names = sorted({name for key in keys for name in self._names[key]})
            if names and len(names) <= PARTIAL_MAX:
                end = run[-1].end() - (2 if run[-1].group().endswith(("'s", "’s")) else 0)
                found.append((run[0].start(), end, names))
        return found

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
