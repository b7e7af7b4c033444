"""Which fact is in force: for a functional relation, the newest start per (subject, relation) wins.

>>> from memory.relations import RelationVocabulary
>>> from memory.rows import Fact
>>> old = Fact(1, "Ellie Kemper", "P27", "USA", "", "user", 1.0, None, None, "2020-01-01", "2020-01-01")
>>> new = Fact(2, "Ellie Kemper", "P27", "Croatia", "", "edit", 1.0, None, None, "2024-01-01", "2024-01-01")
>>> winners(RelationVocabulary.builtin(), [old, new], "2025-01-01")
{2}
"""

from __future__ import annotations

from collections.abc import Sequence

from memory.relations import RelationVocabulary
from memory.rows import Fact


def rank(fact: Fact, when: str) -> tuple[bool, str, int]:
    """Supersession order at `when`: facts in effect by then first, then the newest start, then id."""
    return (fact.start <= when, fact.start, fact.id)


def winners(relations: RelationVocabulary, facts: Sequence[Fact], when: str) -> set[int]:
    """Ids of facts not superseded among `facts` (functional: the newest start per subject/relation)."""
    best: dict[tuple[str, str], Fact] = {}
    keep: set[int] = set()
    for fact in facts:
        if fact.deleted:
            continue
        relation = relations._by_id.get(fact.relation)
        if relation is None or not relation.functional:
            keep.add(fact.id)
            continue
        key = (fact.subject, fact.relation)
        held = best.get(key)
        if held is None or rank(fact, when) > rank(held, when):
            best[key] = fact
    return keep | {f.id for f in best.values()}
