"""Knowledge preference: which evidence wins when sources disagree (Zhou et al. 2024, docs/methods.md §7).

Hierarchy: user instruction > edited / stored facts (newest valid first) > retrieved passages > the
model's own (parametric) memory. Within a tier, the newer statement wins, then the higher score.
"""

from __future__ import annotations

from dataclasses import dataclass

from kedit.store.hit import Hit, Tier

# The evidence an answer carries is the store's `Hit` (kind FACT / PASSAGE / INSTRUCTION / MODEL, its tier
# following from its kind): one type from retrieval to the answer (docs/architecture.md).


def rank(evidence: list[Hit]) -> list[Hit]:
    """Evidence in preference order: tier, then newest, then score.

    >>> from memory import Fact
    >>> def fact(id, obj, day):
    ...     return Hit.of_fact(Fact(id, "s", "P1", obj, f"s is {obj}", "", 1.0, day, None, day, day))
    >>> old, new = fact(1, "x", "2020-01-01"), fact(2, "y", "2024-01-01")
    >>> [e.answer for e in rank([Hit.model_answer("c z", "z"), old, new])]
    ['y', 'x', 'z']
    """
    # two stable sorts: the secondary keys first (newest, then highest score), then the tier
    by_recency = sorted(evidence, key=lambda e: (e.timestamp, e.score), reverse=True)
    return sorted(by_recency, key=lambda e: e.tier)


@dataclass(frozen=True)
class Resolution:
    winner: Hit | None
    ranked: tuple[Hit, ...]
    conflict: bool  # evidence disagreed on the answer
    why: str


def _norm(answer: str | None) -> str:
    return " ".join((answer or "").lower().split())


def resolve(evidence: list[Hit]) -> Resolution:
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
        rule = (
            "newer valid statement wins within the same tier"
            if winner.timestamp != beaten.timestamp
            else "higher retrieval score wins"
        )
    else:
        rule = f"{winner.tier.label} outranks {beaten.tier.label}"
    why = f"{winner.tier.label} says {winner.answer!r}, {beaten.tier.label} says {beaten.answer!r}: {rule}"
    return Resolution(winner, ranked, True, why)


__all__ = ["Resolution", "Tier", "rank", "resolve"]
