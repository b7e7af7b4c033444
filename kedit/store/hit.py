"""A search result: a fact or a passage with its score and source.

>>> Hit(kind="passage", id=3, text="Paris is large.", score=0.8, source="wiki").fact is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

from memory import Fact, Passage

FACT = "fact"
PASSAGE = "passage"


@dataclass(frozen=True)
class Hit:
    kind: str
    id: int
    text: str
    score: float
    source: str
    fact: Fact | None = None
    passage: Passage | None = None
