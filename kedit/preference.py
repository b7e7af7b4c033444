"""Knowledge preference: which evidence wins when sources disagree (Zhou et al. 2024, docs/methods.md §7).

Hierarchy: user instruction > edited / stored facts (newest valid first) > retrieved passages > the
model's own (parametric) memory. Within a tier, the newer statement wins, then the higher score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the annotation: preference needs no store at run time
    from kedit.store.hit import Hit


class Tier(IntEnum):
    INSTRUCTION = 0
    STORED = 1  # edited or inserted facts (the record)
    PASSAGE = 2  # retrieved passages
    PARAMETRIC = 3  # the model's closed-book answer

    @property
    def label(self) -> str:
        return {0: "user instruction", 1: "edited/stored fact", 2: "retrieved passage", 3: "model memory"}[self.value]


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence for an answer (or for one hop of it)."""

    tier: Tier
    text: str
    answer: str | None = None  # the object this evidence asserts, when it asserts one
    source: str = ""
    fact_id: int | None = None
    passage_id: int | None = None
    score: float = 1.0
    timestamp: str = ""  # when it took effect (valid_from, else written); ISO strings sort by time
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def of_passage(cls, hit: Hit, answer: str | None = None, **meta: Any) -> Evidence:
        """A passage the store retrieved (its `Hit`) as passage-tier evidence: the one place the store's
        exchange type becomes the answer's."""
        return cls(Tier.PASSAGE, hit.text, answer, source=hit.source, passage_id=hit.id, score=hit.score, meta=meta)

    def to_dict(self) -> dict:
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


def rank(evidence: list[Evidence]) -> list[Evidence]:
    """Evidence in preference order: tier, then newest, then score.

    >>> old = Evidence(Tier.STORED, "a", "x", timestamp="2020-01-01")
    >>> new = Evidence(Tier.STORED, "b", "y", timestamp="2024-01-01")
    >>> [e.answer for e in rank([Evidence(Tier.PARAMETRIC, "c", "z"), old, new])]
    ['y', 'x', 'z']
    """
    # two stable sorts: the secondary keys first (newest, then highest score), then the tier
    by_recency = sorted(evidence, key=lambda e: (e.timestamp, e.score), reverse=True)
    return sorted(by_recency, key=lambda e: e.tier)


@dataclass(frozen=True)
class Resolution:
    winner: Evidence | None
    ranked: tuple[Evidence, ...]
    conflict: bool  # evidence disagreed on the answer
    why: str


def _norm(answer: str | None) -> str:
    return " ".join((answer or "").lower().split())


def resolve(evidence: list[Evidence]) -> Resolution:
    """Pick the winning evidence among candidates asserting an answer, and say why."""
    ranked = tuple(rank([e for e in evidence if e.answer]))
    if not ranked:
        return Resolution(None, (), False, "no evidence asserts an answer")
    winner = ranked[0]
    losers = [e for e in ranked[1:] if _norm(e.answer) != _norm(winner.answer)]
    if not losers:
        why = f"{winner.tier.label} answers {winner.answer!r}; no other source disagrees"
        return Resolution(winner, ranked, False, why)
    beaten = losers[0]
    if beaten.tier == winner.tier:
        rule = "newer valid statement wins within the same tier" if winner.timestamp != beaten.timestamp else "higher retrieval score wins"
    else:
        rule = f"{winner.tier.label} outranks {beaten.tier.label}"
    why = f"{winner.tier.label} says {winner.answer!r}, {beaten.tier.label} says {beaten.answer!r}: {rule}"
    return Resolution(winner, ranked, True, why)
