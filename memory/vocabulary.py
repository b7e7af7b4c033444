"""The record's part of the vocabulary: custom relations (persisted beside the built-in ones) and aliases."""

from __future__ import annotations

import json
from collections.abc import Iterable

from memory.database import Database
from memory.relations import Relation, RelationVocabulary
from memory.validation import clean_name


def load_relations(db: Database) -> RelationVocabulary:
    """The built-in vocabulary plus every relation registered in `db`."""
    relations = RelationVocabulary.builtin()
    for (definition,) in db.conn.execute("SELECT definition FROM relations ORDER BY id"):
        relations.add(Relation.from_json(json.loads(definition)))
    return relations


def register_relation(db: Database, relations: RelationVocabulary, relation: Relation) -> Relation:
    """Add a custom relation to `relations` and persist it."""
    relations.add(relation)
    with db.write(bump=False) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO relations (id, definition) VALUES (?, ?)",
            (relation.id, json.dumps(relation.to_json(), ensure_ascii=False)),
        )
    return relation


def add_aliases(db: Database, canonical: str, aliases: Iterable[str]) -> None:
    canonical = clean_name(canonical, "canonical name")
    rows = [(clean_name(a, "alias"), canonical) for a in aliases]
    with db.write(bump=False) as conn:
        conn.executemany("INSERT OR IGNORE INTO aliases (alias, canonical) VALUES (?, ?)", rows)


def aliases(db: Database) -> list[tuple[str, str]]:
    """(alias, canonical) pairs."""
    return list(db.conn.execute("SELECT alias, canonical FROM aliases ORDER BY alias"))
