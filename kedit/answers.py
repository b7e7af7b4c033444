"""Answer text forms of the query path, and the `Answer` type a query returns.

>>> clean_answer(" French.\\n\\nThe language")
'French'
>>> short_answer("the United States")
'United States'
>>> norm_answer("The  Hague")
'hague'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kedit.store.hit import Hit


@dataclass
class Answer:
    """An answer with its evidence (winning first) and a trace of how it was reached."""

    text: str
    answer: str | None
    evidence: list[Hit]  # the store's evidence type, end to end (docs/architecture.md)
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "answer": self.answer,
            "evidence": [e.to_dict() for e in self.evidence],
            "trace": self.trace,
        }


def norm_answer(text: str | None) -> str:
    """Comparison form of an answer: case-folded, spaces collapsed, a leading article dropped."""
    folded = " ".join((text or "").casefold().split())
    return folded[4:] if folded.startswith("the ") and len(folded) > 4 else folded


def short_answer(text: str | None) -> str | None:
    """A returned short answer without a leading lowercase "the" ("the United States" -> "United
    States"); a capitalised "The" is kept, being usually part of a name ("The Hague")."""
    if text is None:
        return None
    text = text.strip()
    if text.startswith("the ") and 1 < len(text.split()) <= 6:
        text = text[4:].strip()
    return text


def clean_answer(text: str) -> str:
    """First clause of a greedy continuation: ' French.\\n\\nThe ...' -> 'French'."""
    text = text.strip().split("\n")[0]
    for stop in (". ", ",", ";", " and ", " (", "!", "?"):
        at = text.find(stop)
        if at > 0:
            text = text[:at]
    if text.endswith(".") and not text[-3:-1].count("."):  # keep "D.C.", drop a sentence's full stop
        text = text[:-1]
    return text.strip().strip('"').strip()


def first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


def read_answer(text: str, form: str) -> str:
    """A closed-book continuation read as an answer: "line" (a `Q: ... A:` answer: its first line, a final
    full stop dropped) or "cloze" (the first clause, `clean_answer`)."""
    if form == "line":
        line = first_line(text)
        return line[:-1].strip() if line.endswith(".") and not line[-3:-1].count(".") else line
    return clean_answer(text)


__all__ = ["Answer", "clean_answer", "first_line", "norm_answer", "read_answer", "short_answer"]
