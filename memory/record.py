"""The system of record: one SQLite database in WAL mode; a write returns only after its commit.

Every write that changes facts, passages or vectors bumps `version`, which derived indexes (vectors,
graph) store in their manifests to tell whether they are stale. `Record` is the facade; each concern
has its own module: `facts` (with `supersession`), `passages`, `vectors`, `vocabulary`, `ledger`,
`sessions`, all over one `database.Database`.

>>> rec = Record.open(":memory:")
>>> fact = rec.add_facts([NewFact("Ellie Kemper", "P27", "Croatia")])[0]
>>> rec.current("Ellie Kemper", "P27").object, rec.version
('Croatia', 1)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from memory import vocabulary
from memory.database import Database
from memory.errors import SchemaError
from memory.facts import FactTable
from memory.ledger import EditLedger
from memory.passages import PassageTable
from memory.relations import Relation
from memory.rows import (
    FACT,
    Document,
    EditEntry,
    EvidenceRound,
    EvidenceSession,
    Fact,
    NewFact,
    Passage,
)
from memory.sessions import EvidenceSessions
from memory.validation import TimeLike
from memory.vectors import TABLES, VectorTable


class Record:
    """Facts, passages, their vectors, aliases, the edit ledger and evidence sessions in one database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.path = db.path
        self.read_only = db.read_only
        self.relations = vocabulary.load_relations(db)
        self._facts = FactTable(db, self.relations)
        self._passages = PassageTable(db)
        self._vectors = VectorTable(db)
        self._ledger = EditLedger(db, self._facts.get_fact)
        self._sessions = EvidenceSessions(db)

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Record:
        """Open (creating when writable) the record at `path`; `":memory:"` gives a throwaway one.

        A writable open takes `<path>.lock` (WriterLockedError if another writer has it).
        """
        db = Database.open(path, read_only=read_only)
        try:
            return cls(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise SchemaError(f"{path} is not a readable SQLite record: {exc}") from exc
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        self._db.close()

    @property
    def version(self) -> int:
        """Bumped by every committed change to facts, passages or vectors."""
        return self._db.version

    def get_meta(self, key: str) -> str | None:
        return self._db.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self._db.set_meta(key, value)

    # -- relations and aliases ------------------------------------------------------------------
    def register_relation(self, relation: Relation) -> Relation:
        """Add a custom relation to the vocabulary (persisted)."""
        return vocabulary.register_relation(self._db, self.relations, relation)

    def add_aliases(self, canonical: str, aliases: Iterable[str]) -> None:
        vocabulary.add_aliases(self._db, canonical, aliases)

    def aliases(self) -> list[tuple[str, str]]:
        """(alias, canonical) pairs."""
        return vocabulary.aliases(self._db)

    # -- facts ----------------------------------------------------------------------------------
    def prepare_fact(self, fact: NewFact) -> NewFact:
        """`fact` validated and normalised (relation id resolved, times as UTC ISO, sentence rendered)."""
        return self._facts.prepare_fact(fact)

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
        return self._facts.add_facts(facts, vectors, model, prepared=prepared)

    def sentence_vectors(self, sentences: Iterable[str], model: str) -> dict[str, np.ndarray]:
        """Stored vectors (made by `model`) of facts whose sentence is one of `sentences`, by sentence:
        an identical sentence need not be embedded again."""
        return self._facts.sentence_vectors(sentences, model)

    def get_facts(self, ids: Iterable[int]) -> dict[int, Fact]:
        return self._facts.get_facts(ids)

    def get_fact(self, fact_id: int) -> Fact:
        return self._facts.get_fact(fact_id)

    def preview_update(self, fact_id: int, changes: Mapping[str, Any]) -> NewFact:
        """The validated fact `update_fact(fact_id, changes)` would write (to embed it beforehand)."""
        return self._facts.preview_update(fact_id, changes)

    def update_fact(
        self, fact_id: int, changes: Mapping[str, Any], vector: np.ndarray | None = None, model: str = ""
    ) -> Fact:
        """Change fields of a live fact in place (same id); the old row goes to `fact_revisions`."""
        return self._facts.update_fact(fact_id, changes, vector, model)

    def revisions(self, fact_id: int) -> list[dict[str, Any]]:
        """Earlier versions of a fact (as dicts), oldest first."""
        return self._facts.revisions(fact_id)

    def tombstone_facts(self, ids: Iterable[int]) -> list[Fact]:
        """Mark live facts deleted (they stay in history); returns those tombstoned now."""
        return self._facts.tombstone_facts(ids)

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
        return self._facts.facts(
            subject,
            relation,
            object,
            as_of=as_of,
            include_deleted=include_deleted,
            include_superseded=include_superseded,
        )

    def names(self) -> list[str]:
        """Every distinct subject and object of the live facts, in order of first use."""
        return self._facts.names()

    def current(self, subject: str, relation: str, as_of: TimeLike = None) -> Fact | None:
        """The newest live fact for (subject, relation) valid `as_of` (now when None)."""
        return self._facts.current(subject, relation, as_of)

    def is_current(self, fact: Fact, as_of: TimeLike = None) -> bool:
        """Live, valid `as_of`, and (for a functional relation) not superseded by a newer fact."""
        return self._facts.is_current(fact, as_of)

    def current_among(self, facts: Sequence[Fact], as_of: TimeLike = None) -> set[int]:
        """Ids of `facts` that are current `as_of` (now): one query for all their (subject, relation) pairs."""
        return self._facts.current_among(facts, as_of)

    def history(self, subject: str | None = None, relation: str | None = None) -> list[Fact]:
        """Every fact ever written for the filters, forgotten and superseded ones included, by start."""
        return self._facts.history(subject, relation)

    def count(self, kind: str = FACT, include_deleted: bool = False) -> int:
        clause = "" if include_deleted else " WHERE deleted_at IS NULL"
        return int(self._db.conn.execute(f"SELECT COUNT(*) FROM {TABLES[kind]}{clause}").fetchone()[0])

    # -- vectors --------------------------------------------------------------------------------
    def live_ids(self, kind: str) -> np.ndarray:
        """Sorted int64 ids of live facts or passages (what a vector index must hold)."""
        return self._vectors.live_ids(kind)

    def iter_vectors(
        self, kind: str, model: str, batch: int = 20_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of live items whose stored vector was made by `model`, in batches."""
        return self._vectors.iter_vectors(kind, model, batch)

    def texts_without_vectors(self, kind: str, model: str) -> list[tuple[int, str]]:
        """Live items that have no vector from `model` yet: (id, text to embed)."""
        return self._vectors.texts_without_vectors(kind, model)

    def put_vectors(self, kind: str, ids: Sequence[int], vectors: np.ndarray, model: str) -> None:
        self._vectors.put_vectors(kind, ids, vectors, model)

    # -- documents and passages -----------------------------------------------------------------
    def add_document(
        self,
        chunks: Sequence[str],
        *,
        source: str,
        title: str | None = None,
        valid_from: TimeLike = None,
        valid_to: TimeLike = None,
        provenance: Mapping[str, Any] | None = None,
        vectors: np.ndarray | None = None,
        model: str = "",
    ) -> tuple[Document, list[Passage]]:
        """Write a document as its passages (`chunks`, already split) in one transaction."""
        return self._passages.add_document(
            chunks,
            source=source,
            title=title,
            valid_from=valid_from,
            valid_to=valid_to,
            provenance=provenance,
            vectors=vectors,
            model=model,
        )

    def get_passages(self, ids: Iterable[int]) -> dict[int, Passage]:
        return self._passages.get_passages(ids)

    def passages(self, document_id: int | None = None, include_deleted: bool = False) -> list[Passage]:
        return self._passages.passages(document_id, include_deleted)

    def delete_document(self, document_id: int) -> list[Passage]:
        """Tombstone a document and its passages; returns the passages tombstoned."""
        return self._passages.delete_document(document_id)

    def redact_passage(
        self, passage_id: int, text: str, vector: np.ndarray | None = None, model: str = ""
    ) -> Passage:
        """Replace a live passage's text in place (same id; the old text is not kept) and its vector."""
        return self._passages.redact_passage(passage_id, text, vector, model)

    def tombstone_passages(self, ids: Iterable[int]) -> list[Passage]:
        """Mark live passages deleted; a document left with no live passage is deleted too.
        Returns the passages tombstoned now."""
        return self._passages.tombstone_passages(ids)

    # -- edit ledger ----------------------------------------------------------------------------
    def record_edit(
        self,
        *,
        decision: str,
        reasons: Sequence[str] = (),
        fact_id: int | None = None,
        edit_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> EditEntry:
        """Append a ledger line: which fact, which parametric edit record, what the router decided and why."""
        return self._ledger.record_edit(
            decision=decision, reasons=reasons, fact_id=fact_id, edit_id=edit_id, details=details
        )

    def redact_edit(
        self, entry_id: int, reasons: Sequence[str], details: Mapping[str, Any] | None
    ) -> EditEntry:
        """Rewrite a ledger line's reasons and details in place (forgetting scrubs a forgotten fact's text
        from the lines that recorded it; what was decided, and when, stays)."""
        return self._ledger.redact_edit(entry_id, reasons, details)

    def edits(self, fact_id: int | None = None) -> list[EditEntry]:
        return self._ledger.edits(fact_id)

    # -- evidence-pool sessions -----------------------------------------------------------------
    def save_session(
        self, question: str, slots: list[dict[str, Any]], complete: bool, rounds: Sequence[EvidenceRound]
    ) -> EvidenceSession:
        return self._sessions.save_session(question, slots, complete, rounds)

    def session(self, session_id: int) -> EvidenceSession:
        return self._sessions.session(session_id)

    def session_ids(self) -> list[int]:
        return self._sessions.session_ids()

    def delete_sessions(self, ids: Iterable[int]) -> list[int]:
        """Erase evidence sessions and their rounds (not tombstoned: a session is a cache of what a
        question found, and forgetting must not leave the found text behind). Returns the ids erased."""
        return self._sessions.delete_sessions(ids)

    # -- export ---------------------------------------------------------------------------------
    def dump(self) -> Iterator[dict[str, Any]]:
        """Every row a record export holds, as JSON-ready dicts tagged with `type`."""
        for relation in self.relations:
            if relation.source in ("custom", "learned"):  # built-in ones ship with kedit
                yield {"type": "relation"} | relation.to_json()
        for alias, canonical in self.aliases():
            yield {"type": "alias", "alias": alias, "canonical": canonical}
        for fact in self._facts.select(None, None, None, None, True):
            yield {"type": "fact"} | asdict(fact)
        for doc in self._passages.documents():
            yield (
                {"type": "document"}
                | asdict(doc)
                | {"passages": [p.text for p in self.passages(doc.id, include_deleted=True)]}
            )
        for entry in self.edits():
            yield {"type": "edit"} | asdict(entry)


__all__ = ["Record"]
