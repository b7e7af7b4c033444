"""A search result: a fact or a passage with its score and source, and how it was found. The one type
the store hands out: plain searches return it, the evidence pool collects it round by round.

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
    """One piece of retrieved evidence (`kind` FACT or PASSAGE; `fact` / `passage` the row itself)."""

    kind: str
    id: int
    text: str
    score: float
    source: str
    fact: Fact | None = None
    passage: Passage | None = None
    via: str = "vector"  # how it was found: "vector" (similarity search) or "graph" (the fact in force)
    round: int = 0  # the evidence pool's round that found it (0: a plain search)
