"""Names a question's text gives for an entity the store may not know (the query loop's walks start there).

>>> subject_in_text("Who is the mother of Anna von Trapp?")
('Anna von Trapp', 21)
>>> looks_like_name("Ellie Kemper"), looks_like_name("the country that Ellie Kemper")
(True, False)
"""

from __future__ import annotations

import re

_QUESTION_WORDS = {
    "who",
    "what",
    "which",
    "where",
    "when",
    "whose",
    "whom",
    "how",
    "in",
    "on",
    "at",
    "is",
    "are",
    "was",
    "were",
    "did",
    "does",
    "do",
    "name",
    "tell",
    "the",
    "a",
    "an",
    "of",
}
_NAME_GLUE = {
    "of",
    "de",
    "del",
    "da",
    "di",
    "von",
    "van",
    "der",
    "den",
    "du",
    "la",
    "le",
    "y",
    "and",
    "the",
    "al",
}
_WORD = re.compile(r"[\w][\w.'\-&]*")


def subject_in_text(question: str) -> tuple[str, int] | None:
    """The entity a question names when the store does not know it: the longest run of capitalised
    words (name glue such as "of"/"von" allowed inside), question words at the start left out."""
    words = [(m.group(0), m.start()) for m in _WORD.finditer(question)]
    best: tuple[int, int, int] | None = None  # (length, first word, last word)
    i = 0
    while i < len(words):
        word = words[i][0]
        if (word[0].isupper() or word[0].isdigit()) and not (i == 0 and word.casefold() in _QUESTION_WORDS):
            j = i
            while j + 1 < len(words):
                nxt = words[j + 1][0]
                gap = question[words[j][1] + len(words[j][0]) : words[j + 1][1]]
                if "\n" in gap or any(c in gap for c in ".:;!?"):
                    break  # a name does not run across a line or a sentence break
                if nxt[0].isupper() or nxt[0].isdigit():
                    j += 1
                elif nxt.casefold() in _NAME_GLUE and j + 2 < len(words) and words[j + 2][0][0].isupper():
                    j += 2
                else:
                    break
            if best is None or j - i + 1 >= best[0]:
                best = (j - i + 1, i, j)
            i = j + 1
        else:
            i += 1
    if best is None:
        return None
    _, first, last = best
    start = words[first][1]
    end = words[last][1] + len(words[last][0])
    name = question[start:end].rstrip(".'").removesuffix("'s").strip()
    return (name, start) if name else None


def looks_like_name(text: str) -> bool:
    """A template's subject group is taken as an entity only when it reads like a name: at most six
    words, none of them a question word at the start, one capitalised (not "the country that X ...")."""
    words = text.strip().split()
    if not words or len(words) > 6 or words[0].casefold() in _QUESTION_WORDS - {"the"}:
        return False
    lower = [w for w in words if not (w[0].isupper() or w[0].isdigit()) and w.casefold() not in _NAME_GLUE]
    return not lower and any(w[0].isupper() or w[0].isdigit() for w in words)
