"""Facts in the record: validation, writes (with their vectors), revisions, tombstones and lookups.

Which fact is in force is decided in `memory.supersession`; this module reads and writes the rows.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from memory.database import Database, in_chunks, inserted_id
from memory.errors import InvalidInputError, NotFoundError
from memory.relations import RelationVocabulary
from memory.rows import FACT, Fact, NewFact
from memory.supersession import rank, winners
from memory.validation import (
    MAX_SENTENCE_CHARS,
    TimeLike,
    check_validity,
    clean_confidence,
    clean_json_object,
    clean_name,
    clean_text,
    now_timestamp,
    to_timestamp,
)
from memory.vectors import insert_vectors

FACT_COLUMNS = (
    "id, subject, relation, object, sentence, source, confidence, valid_from, valid_to, "
    "created_at, updated_at, provenance, deleted_at"
)
_UPDATABLE = {
    "subject",
    "relation",
    "object",
    "sentence",
    "source",
    "confidence",
    "valid_from",
    "valid_to",
    "provenance",
}


def fact_from_row(row: Sequence[Any]) -> Fact:
    """A `facts` row (FACT_COLUMNS order: the dataclass's field order) as a Fact. Positional: this runs for
    every fact read (searches, opening a large store); mypy cannot count a sliced row."""
    return Fact(*row[:11], provenance=json.loads(row[11]), deleted_at=row[12])  # type: ignore[misc]


class FactTable:
    """The `facts` and `fact_revisions` tables, read through the relation vocabulary."""

    def __init__(self, db: Database, relations: RelationVocabulary) -> None:
        self._db = db
        self.relations = relations

    # -- writes ---------------------------------------------------------------------------------
    def prepare_fact(self, fact: NewFact) -> NewFact:
        """`fact` validated and normalised (relation id resolved, times as UTC ISO, sentence rendered)."""
        subject = clean_name(fact.subject, "subject")
        obj = clean_name(fact.object, "object")
        relation = self.relations.resolve(clean_name(fact.relation, "relation", 200))
        sentence = (
            relation.render(subject, obj)
            if fact.sentence is None
            else clean_text(fact.sentence, "sentence", MAX_SENTENCE_CHARS)
        )
        valid_from = to_timestamp(fact.valid_from, "valid_from")
        valid_to = to_timestamp(fact.valid_to, "valid_to")
        check_validity(valid_from, valid_to)
        return NewFact(
            subject=subject,
            relation=relation.id,
            object=obj,
            sentence=sentence,
            source=clean_name(fact.source, "source", 200),
            confidence=clean_confidence(fact.confidence),
            valid_from=valid_from,
            valid_to=valid_to,
            provenance=json.loads(clean_json_object(fact.provenance, "provenance")),
        )

    def add_facts(
        self,
        facts: Sequence[NewFact],
        vectors: np.ndarray | None = None,
        model: str = "",
        *,
        prepared: bool = False,
    ) -> list[Fact]:
        """Write `facts` (and their vectors) in one transaction; all or nothing.

        `prepared=True` says every fact is already the output of `prepare_fact` (it is not checked again).
        """
        if not prepared:
            facts = [self.prepare_fact(f) for f in facts]
        prepared_facts = list(facts)
        if vectors is not None:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if len(vectors) != len(prepared_facts):
                raise InvalidInputError(f"{len(prepared_facts)} facts but {len(vectors)} vectors")
        now = now_timestamp()
        rows = [
            (
                f.subject,
                f.relation,
                f.object,
                f.sentence,
                f.source,
                f.confidence,
                f.valid_from,
                f.valid_to,
                now,
                now,
                "{}" if not f.provenance else json.dumps(f.provenance, ensure_ascii=False),
            )
            for f in prepared_facts
        ]
        ids: list[int] = []
        with self._db.write() as conn:
            insert = conn.cursor()
            for row in rows:
                insert.execute(
                    "INSERT INTO facts (subject, relation, object, sentence, source, confidence, valid_from,"
                    " valid_to, created_at, updated_at, provenance) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    row,
                )
                ids.append(inserted_id(insert))
            if vectors is not None:
                insert_vectors(conn, FACT, ids, vectors, model)
        return [
            # prepared facts: sentence and provenance filled in by prepare_fact
            Fact(
                i,
                f.subject,
                f.relation,
                f.object,
                f.sentence or "",
                f.source,
                f.confidence,
                f.valid_from,
                f.valid_to,
                now,
                now,
                provenance=f.provenance or {},
            )
            for i, f in zip(ids, prepared_facts)
        ]

    def preview_update(self, fact_id: int, changes: Mapping[str, Any]) -> NewFact:
        """The validated fact `update_fact(fact_id, changes)` would write (to embed it beforehand)."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise InvalidInputError(
                f"cannot update {sorted(unknown)}; updatable fields: {sorted(_UPDATABLE)}"
            )
        old = self.get_fact(fact_id)
        if old.deleted:
            raise InvalidInputError(
                f"fact {fact_id} was forgotten at {old.deleted_at}; add a new fact instead"
            )
        merged = {k: v for k, v in asdict(old).items() if k in _UPDATABLE} | dict(changes)
        if "sentence" not in changes and {"subject", "relation", "object"} & set(changes):
            merged["sentence"] = None  # re-render from the template
        return self.prepare_fact(NewFact(**merged))

    def update_fact(
        self, fact_id: int, changes: Mapping[str, Any], vector: np.ndarray | None = None, model: str = ""
    ) -> Fact:
        """Change fields of a live fact in place (same id); the old row goes to `fact_revisions`."""
        old = self.get_fact(fact_id)
        new = self.preview_update(fact_id, changes)
        now = now_timestamp()
        with self._db.write() as conn:
            revision = conn.execute(
                "SELECT COALESCE(MAX(revision), 0) + 1 FROM fact_revisions WHERE fact_id = ?", (fact_id,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO fact_revisions (fact_id, revision, row, replaced_at) VALUES (?, ?, ?, ?)",
                (fact_id, revision, json.dumps(asdict(old), ensure_ascii=False), now),
            )
            conn.execute(
                "UPDATE facts SET subject=?, relation=?, object=?, sentence=?, source=?, confidence=?,"
                " valid_from=?, valid_to=?, provenance=?, updated_at=? WHERE id=?",
                (
                    new.subject,
                    new.relation,
                    new.object,
                    new.sentence,
                    new.source,
                    new.confidence,
                    new.valid_from,
                    new.valid_to,
                    json.dumps(new.provenance, ensure_ascii=False),
                    now,
                    fact_id,
                ),
            )
            if vector is not None:
                insert_vectors(conn, FACT, [fact_id], [vector], model, replace=True)
        return self.get_fact(fact_id)

    def tombstone_facts(self, ids: Iterable[int]) -> list[Fact]:
        """Mark live facts deleted (they stay in history); returns those tombstoned now."""
        live = [f for f in self.get_facts(ids).values() if not f.deleted]
        if not live:
            return []
        now = now_timestamp()
        with self._db.write() as conn:
            conn.executemany(
                "UPDATE facts SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                [(now, f.id) for f in live],
            )
        return [replace(f, deleted_at=now) for f in live]

    # -- reads ----------------------------------------------------------------------------------
    def sentence_vectors(self, sentences: Iterable[str], model: str) -> dict[str, np.ndarray]:
        """Stored vectors (made by `model`) of facts whose sentence is one of `sentences`, by sentence:
        an identical sentence need not be embedded again."""
        found: dict[str, np.ndarray] = {}
        for chunk, marks in in_chunks(sorted(set(sentences))):
            rows = self._db.conn.execute(
                f"SELECT f.sentence, v.vector FROM facts f JOIN vectors v ON v.kind = '{FACT}' AND v.item_id = f.id"
                f" WHERE f.sentence IN ({marks}) AND v.model = ?",
                [*chunk, model],
            )
            for sentence, blob in rows:
                found.setdefault(sentence, np.frombuffer(blob, dtype=np.float32))
        return found

    def get_facts(self, ids: Iterable[int]) -> dict[int, Fact]:
        found: dict[int, Fact] = {}
        for chunk, marks in in_chunks(sorted({int(i) for i in ids})):
            for row in self._db.conn.execute(
                f"SELECT {FACT_COLUMNS} FROM facts WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = fact_from_row(row)
        return found

    def get_fact(self, fact_id: int) -> Fact:
        found = self.get_facts([fact_id]).get(int(fact_id))
        if found is None:
            raise NotFoundError(f"no fact with id {fact_id}")
        return found

    def revisions(self, fact_id: int) -> list[dict[str, Any]]:
        """Earlier versions of a fact (as dicts), oldest first."""
        rows = self._db.conn.execute(
            "SELECT row, replaced_at FROM fact_revisions WHERE fact_id = ? ORDER BY revision", (fact_id,)
        )
        return [json.loads(row) | {"replaced_at": at} for row, at in rows]

    def select(
        self,
        subject: str | None,
        relation: str | None,
        obj: str | None,
        as_of: str | None,
        include_deleted: bool,
    ) -> list[Fact]:
        """Rows matching the fields exactly (`relation` an id), valid `as_of` when given, by id."""
        where, args = [], []
        for column, value in (("subject", subject), ("relation", relation), ("object", obj)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if not include_deleted:
            where.append("deleted_at IS NULL")
        if as_of is not None:
            where.append("(valid_from IS NULL OR valid_from <= ?) AND (valid_to IS NULL OR valid_to > ?)")
            args += [as_of, as_of]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.conn.execute(f"SELECT {FACT_COLUMNS} FROM facts {clause} ORDER BY id", args)
        return [fact_from_row(row) for row in rows]

    def names(self) -> list[str]:
        """Every distinct subject and object of the live facts, in order of first use (what the entity
        linker indexes: one read of two columns, not every fact as an object)."""
        rows = self._db.conn.execute("SELECT subject, object FROM facts WHERE deleted_at IS NULL ORDER BY id")
        return list(dict.fromkeys(itertools.chain.from_iterable(rows.fetchall())))

    def relation_id(self, relation: str | None) -> str | None:
        return None if relation is None else self.relations.resolve(relation).id

    def facts(
        self,
        subject: str | None = None,
        relation: str | None = None,
        object: str | None = None,
        *,
        as_of: TimeLike = None,
        include_deleted: bool = False,
        include_superseded: bool = True,
    ) -> list[Fact]:
        """Facts matching the given fields, valid `as_of` (any time when None), oldest first.

        With `include_superseded=False`, a functional relation keeps only its current fact per subject.
        """
        when = to_timestamp(as_of, "as_of")
        found = self.select(subject, self.relation_id(relation), object, when, include_deleted)
        if include_superseded:
            return found
        kept = winners(self.relations, found, when or now_timestamp())
        return [f for f in found if f.id in kept]

    def current(self, subject: str, relation: str, as_of: TimeLike = None) -> Fact | None:
        """The newest live fact for (subject, relation) valid `as_of` (now when None)."""
        when = to_timestamp(as_of, "as_of") or now_timestamp()
        found = self.select(subject, self.relation_id(relation), None, when, False)
        if not found:
            return None
        return max(found, key=lambda f: rank(f, when))

    def is_current(self, fact: Fact, as_of: TimeLike = None) -> bool:
        """Live, valid `as_of`, and (for a functional relation) not superseded by a newer fact."""
        when = to_timestamp(as_of, "as_of") or now_timestamp()
        if fact.deleted or not fact.valid_at(when):
            return False
        relation = self.relations._by_id.get(fact.relation)
        if relation is None or not relation.functional:
            return True
        winner = self.current(fact.subject, fact.relation, when)
        return winner is not None and winner.id == fact.id

    def current_among(self, facts: Sequence[Fact], as_of: TimeLike = None) -> set[int]:
        """Ids of `facts` that are current `as_of` (now): one query for all their (subject, relation) pairs."""
        when = to_timestamp(as_of, "as_of") or now_timestamp()
        pairs = {(f.subject, f.relation) for f in facts}
        rivals: list[Fact] = []
        # `subject IN (...)` uses the (subject, relation) index
        for chunk, marks in in_chunks(sorted({subject for subject, _ in pairs}), 400):
            rows = self._db.conn.execute(
                f"SELECT {FACT_COLUMNS} FROM facts WHERE subject IN ({marks})"
                " AND deleted_at IS NULL AND (valid_from IS NULL OR valid_from <= ?)"
                " AND (valid_to IS NULL OR valid_to > ?)",
                [*chunk, when, when],
            )
            rivals += [f for f in map(fact_from_row, rows) if (f.subject, f.relation) in pairs]
        return winners(self.relations, rivals, when) & {f.id for f in facts}

    def history(self, subject: str | None = None, relation: str | None = None) -> list[Fact]:
        """Every fact ever written for the filters, forgotten and superseded ones included, by start."""
        found = self.select(subject, self.relation_id(relation), None, None, True)
        return sorted(found, key=lambda f: (f.start, f.id))
