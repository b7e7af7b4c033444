"""Other written forms of a stored person-like name: middle names added or left out, given names as
initials or cut short ("Raymond Walter Wietecha" for "Ray Wietecha", "S. W. Van Schaick" for "Stephen
Wilson Van Schaick", "F Ortis" for "Fernanda Ortis").

Aliases like these are how people and sources write names (KnowEdit's `Subject_Aliasing` prompts are
mostly such forms), and no spelling rule reaches them: the word counts differ and the given names are
abbreviated. The rule is the one record-linkage uses for personal names: the surname (the last word, with
its particles: "Van Guilder", "dos Santos") is the same, the first given names are the same or one is an
initial or a short form of the other, and when both forms carry middle names they agree one by one. So
"George W. Bush" is not "George H. W. Bush", "Tadashi Fukami" not "Dan Fukami", and a surname alone
("De Angelis") names no one. Names with digits (events, objects) are left to the other linkers. Used only
when no stored subject is named whole or in part (kedit/scope/model.py).

>>> index = NameVariants(["Ray Wietecha", "S. W. Van Schaick", "George H. W. Bush", "Fernanda Ortis"])
>>> index.spans("The place of death of Raymond Walter Wietecha is")
[(22, 45, ['Ray Wietecha'])]
>>> index.spans("Stephen Wilson Van Schaick was born in"), index.spans("The employer of F Ortis is")
([(0, 26, ['S. W. Van Schaick'])], [(16, 23, ['Fernanda Ortis'])])
>>> index.spans("George W. Bush was"), index.spans("Ortis is")
([], [])
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from graph.entity_linker import FUNCTION_WORDS, fold

MAX_NAMES = 4  # a form that fits more stored names than this links to none of them (as partial names)
MAX_WORDS = 7  # the longest run of name words read as one name
SHORT_FORM = 3  # a given name this long or longer may stand for a longer one that starts with it
PARTICLES = frozenset("van von de der den du la le di da del dos das do".split())
_SUFFIXES = frozenset("jr sr ii iii iv v".split())
# a word of a name: letters, inner apostrophes and hyphens ("O'Neil", "Jean-Paul"); "T.S." is two initials
_NAME_WORD = re.compile(r"[^\W\d_](?:[\w'’-]*[^\W\d_])?")


def _key(word: str) -> str:
    return re.sub(r"['’]s$", "", fold(word))


def _parts(words: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(given names, surname with its particles) of folded name words, or None when not a personal name
    of two or more parts."""
    if len(words) < 2 or words[-1] in _SUFFIXES or len(words[-1]) < 2 or words[-1] in PARTICLES:
        return None
    cut = len(words) - 1
    while cut > 1 and words[cut - 1] in PARTICLES:
        cut -= 1
    given, surname = tuple(words[:cut]), tuple(words[cut:])
    if (
        not given
        or given[0] in PARTICLES
        or any(len(w) > 1 and w in FUNCTION_WORDS and w not in PARTICLES for w in words)
    ):
        return None  # "The Who", "The Man Who Cried": not a personal name
    return given, surname


def _same_given(a: str, b: str) -> bool:
    """One given name for another: the same, an initial of it, or a short form ("Ray" / "Raymond")."""
    short, long = sorted((a, b), key=len)
    return (
        a == b
        or (len(short) == 1 and long.startswith(short))
        or (len(short) >= SHORT_FORM and long.startswith(short))
    )


def same_person(given: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """Whether two lists of given names (surnames equal) can write the same name.

    >>> same_person(("stavros", "g"), ("stavros", "george")), same_person(("george", "w"), ("george", "h", "w"))
    (True, False)
    >>> same_person(("ole",), ("ole", "bjarne")), same_person(("dan",), ("tadashi",))
    (True, False)
    """
    if not _same_given(given[0], other[0]):
        return False
    if len(given) == 1 or len(other) == 1:  # one form gives the first name only: the other adds middles
        return True
    return len(given) == len(other) and all(_same_given(a, b) for a, b in zip(given[1:], other[1:]))


class NameVariants:
    """Stored subject names of two or more words, indexed by their folded surname."""

    def __init__(self, names: Iterable[str]) -> None:
        self._by_surname: dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]] = {}
        for name in names:
            if any(c.isdigit() for c in name):
                continue
            parts = _parts([_key(w) for w in _NAME_WORD.findall(name)])
            if parts is not None:
                self._by_surname.setdefault(parts[1], []).append((parts[0], name))

    def _runs(self, text: str) -> list[list[re.Match]]:
        """Runs of capitalised words and initials ("T.S. Lodge"), particles allowed inside."""
        runs: list[list[re.Match]] = [[]]
        for m in _NAME_WORD.finditer(text):
            word = m.group()
            capital = word[:1].isupper()
            if not (capital or (word in PARTICLES and runs[-1])):
                runs.append([])
                continue
            previous = runs[-1][-1] if runs[-1] else None
            if previous is not None and text[previous.end() : m.start()].strip(" .") != "":
                runs.append([])  # a comma, a parenthesis or another mark ends a name
            runs[-1].append(m)
        return [run for run in runs if len(run) >= 2]

    def spans(self, text: str) -> list[tuple[int, int, list[str]]]:
        """(start, end, names) for the longest form of a stored name in each run of name words."""
        found: list[tuple[int, int, list[str]]] = []
        for run in self._runs(text):
            best: tuple[int, int, list[str]] | None = None
            for first in range(len(run) - 1):
                for last in range(min(len(run), first + MAX_WORDS) - 1, first, -1):
                    parts = _parts([_key(m.group()) for m in run[first : last + 1]])
                    if parts is None:
                        continue
                    given, surname = parts
                    names = sorted({n for g, n in self._by_surname.get(surname, ()) if same_person(given, g)})
                    if names and len(names) <= MAX_NAMES:
                        end = run[last].end() - (2 if run[last].group().endswith(("'s", "’s")) else 0)
                        span = (run[first].start(), end, names)
                        if best is None or span[1] - span[0] > best[1] - best[0]:
                            best = span
                        break
            if best is not None:
                found.append(best)
        return found


__all__ = ["NameVariants", "same_person"]
