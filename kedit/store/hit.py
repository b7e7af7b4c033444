"""A piece of evidence: a stored fact or passage with its score and source and how it was found, or the user's
instruction or the model's own answer. The one evidence type from retrieval to the answer: plain searches
return it, the evidence pool collects it round by round, the query loop ranks it (`kedit.preference`) and
an `Answer` carries it. Its `tier` follows from its kind; `answer` is the object it asserts, when it asserts
one (a fact its object; a passage what it was read to say; see docs/architecture.md).

>>> hit = Hit(kind="passage", id=3, text="Paris is large.", score=0.8, source="wiki")
>>> hit.fact is None, hit.tier.label, hit.passage_id, hit.fact_id
(True, 'retrieved passage', 3, None)
>>> hit.asserting("Paris").answer, hit.answer
('Paris', None)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from memory import Fact, Passage

FACT = "fact"
PASSAGE = "passage"
INSTRUCTION = "instruction"  # the user's instruction to the query
MODEL = "model"  # the model's closed-book answer


class Tier(IntEnum):
    """The kinds of evidence in preference order (docs/methods.md §7): a lower tier wins."""

    INSTRUCTION = 0
    STORED = 1  # edited or inserted facts (the record)
    PASSAGE = 2  # retrieved passages
    PARAMETRIC = 3  # the model's closed-book answer

    @property
    def label(self) -> str:
        return {0: "user instruction", 1: "edited/stored fact", 2: "retrieved passage", 3: "model memory"}[
            self.value
        ]


_TIER_OF_KIND = {
    INSTRUCTION: Tier.INSTRUCTION,
    FACT: Tier.STORED,
    PASSAGE: Tier.PASSAGE,
    MODEL: Tier.PARAMETRIC,
}


@dataclass(frozen=True)
class Hit:
    """One piece of evidence (`kind` FACT, PASSAGE, INSTRUCTION or MODEL; `fact` / `passage` the stored row,
    `id` its id; an instruction or the model's answer has no id)."""

    kind: str
    id: int | None
    text: str
    score: float
    source: str
    fact: Fact | None = None
    passage: Passage | None = None
    via: str = "vector"  # how it was found: "vector" (similarity search), "graph" (the fact in force),
    # "instruction" (the user gave it), "closed-book" (the model answered from its weights)
    round: int = 0  # the evidence pool's round that found it (0: a plain search)
    answer: str | None = None  # the object it asserts, when it asserts one

    @classmethod
    def of_fact(cls, fact: Fact, score: float = 1.0, *, via: str = "vector", round: int = 0) -> Hit:
        """A stored fact as evidence: it asserts its object."""
        return cls(
            FACT,
            fact.id,
            fact.sentence,
            score,
            fact.source,
            fact=fact,
            via=via,
            round=round,
            answer=fact.object,
        )

    @classmethod
    def of_passage(cls, passage: Passage, score: float) -> Hit:
        return cls(PASSAGE, passage.id, passage.text, score, passage.source, passage=passage)

    @classmethod
    def instruction(cls, text: str, answer: str | None = None) -> Hit:
        """The user's instruction (or one statement of it) as evidence."""
        return cls(INSTRUCTION, None, text, 1.0, "instruction", via="instruction", answer=answer)

    @classmethod
    def model_answer(cls, text: str, answer: str | None) -> Hit:
        """The model's closed-book answer (`text`: the prompt's last line and the answer) as evidence."""
        return cls(MODEL, None, text, 1.0, "model", via="closed-book", answer=answer)

    def asserting(self, answer: str | None) -> Hit:
        """This evidence read as asserting `answer` (a passage the model or a template read)."""
        return replace(self, answer=answer)

    @property
    def tier(self) -> Tier:
        return _TIER_OF_KIND[self.kind]

    @property
    def fact_id(self) -> int | None:
        return self.id if self.kind == FACT else None

    @property
    def passage_id(self) -> int | None:
        return self.id if self.kind == PASSAGE else None

    @property
    def timestamp(self) -> str:
        """When it took effect: a fact's valid_from, else ""; ISO strings sort by time."""
        return (self.fact.start or "") if self.fact is not None else ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form an `Answer` (and each hop of its trace) shows."""
        return {
            "tier": self.tier.name.lower(),
            "tier_label": self.tier.label,
            "text": self.text,
            "answer": self.answer,
            "source": self.source,
            "fact_id": self.fact_id,
            "passage_id": self.passage_id,
            "score": round(float(self.score), 4),
            "timestamp": self.timestamp,
        }
