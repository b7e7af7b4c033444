"""The system of record: one SQLite database in WAL mode; a write returns only after its commit.

Every write that changes facts, passages or vectors bumps `version`, which derived indexes (vectors,
graph) store in their manifests to tell whether they are stale.

>>> rec = Record.open(":memory:")
>>> fact = rec.add_facts([NewFact("Ellie Kemper", "P27", "Croatia")])[0]
>>> rec.current("Ellie Kemper", "P27").object, rec.version
('Croatia', 1)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from memory.errors import InvalidInputError, NotFoundError, ReadOnlyError, SchemaError
from memory.records import (
    Document,
    EditEntry,
    EvidenceRound,
    EvidenceSession,
    Fact,
    NewFact,
    Passage,
)
from memory.relations import Relation, RelationVocabulary
from memory.schema import migrate, schema_version
from memory.validation import (
    MAX_NAME_CHARS,
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
from memory.writer_lock import WriterLock

_FACT_COLUMNS = (
    "id, subject, relation, object, sentence, source, confidence, valid_from, valid_to, "
    "created_at, updated_at, provenance, deleted_at"
)
_PASSAGE_COLUMNS = "id, document_id, position, text, source, valid_from, valid_to, created_at, deleted_at"
FACT = "fact"
PASSAGE = "passage"


def _fact(row: tuple) -> Fact:
    return Fact(*row[:11], provenance=json.loads(row[11]), deleted_at=row[12])


def _passage(row: tuple) -> Passage:
    return Passage(*row)


class Record:
    """Facts, passages, their vectors, aliases, the edit ledger and evidence sessions in one database."""

    def __init__(self, conn: sqlite3.Connection, path: str, read_only: bool, lock: WriterLock | None) -> None:
        self._conn = conn
        self.path = path
        self.read_only = read_only
        self._lock = lock
        self.relations = RelationVocabulary.builtin()
        for (definition,) in conn.execute("SELECT definition FROM relations ORDER BY id"):
            self.relations.add(Relation.from_json(json.loads(definition)))

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Record:
        """Open (creating when writable) the record at `path`; `":memory:"` gives a throwaway one.

        A writable open takes `<path>.lock` (WriterLockedError if another writer has it).
        """
        path = str(path)
        lock = None
        try:
            if read_only:
                if path == ":memory:" or not Path(path).is_file():
                    raise NotFoundError(f"no record at {path} to open read-only")
                conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False)
            else:
                if path != ":memory:":
                    lock = WriterLock(path + ".lock")
                    lock.acquire()
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            if not read_only:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                # a forgotten passage or session is overwritten on disk, not left in a free page
                conn.execute("PRAGMA secure_delete = ON")
                migrate(conn)
            elif schema_version(conn) == 0:
                raise SchemaError(f"{path} is not a kedit record (schema version 0)")
            return cls(conn, path, read_only, lock)
        except sqlite3.DatabaseError as exc:
            if lock is not None:
                lock.release()
            raise SchemaError(f"{path} is not a readable SQLite record: {exc}") from exc
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.release()

    @property
    def version(self) -> int:
        """Bumped by every committed change to facts, passages or vectors."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'record_version'").fetchone()
        return int(row[0])

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._write(bump=False) as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def _write(self, bump: bool = True) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise ReadOnlyError(f"{self.path} is open read-only")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            if bump:
                conn.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'record_version'"
                )
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise InvalidInputError(f"the record refused the write: {exc}") from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- relations and aliases ------------------------------------------------------------------
    def register_relation(self, relation: Relation) -> Relation:
        """Add a custom relation to the vocabulary (persisted)."""
        self.relations.add(relation)
        with self._write(bump=False) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO relations (id, definition) VALUES (?, ?)",
                (relation.id, json.dumps(relation.to_json(), ensure_ascii=False)),
            )
        return relation

    def add_aliases(self, canonical: str, aliases: Iterable[str]) -> None:
        canonical = clean_name(canonical, "canonical name")
        rows = [(clean_name(a, "alias"), canonical) for a in aliases]
        with self._write(bump=False) as conn:
            conn.executemany("INSERT OR IGNORE INTO aliases (alias, canonical) VALUES (?, ?)", rows)

    def aliases(self) -> list[tuple[str, str]]:
        """(alias, canonical) pairs."""
        return list(self._conn.execute("SELECT alias, canonical FROM aliases ORDER BY alias"))

    # -- facts ----------------------------------------------------------------------------------
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
        self, facts: Sequence[NewFact], vectors: np.ndarray | None = None, model: str = "", *,
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
            (f.subject, f.relation, f.object, f.sentence, f.source, f.confidence, f.valid_from, f.valid_to, now, now,
             "{}" if not f.provenance else json.dumps(f.provenance, ensure_ascii=False))
            for f in prepared_facts
        ]
        ids: list[int] = []
        with self._write() as conn:
            insert = conn.cursor()
            for row in rows:
                insert.execute(
                    "INSERT INTO facts (subject, relation, object, sentence, source, confidence, valid_from,"
                    " valid_to, created_at, updated_at, provenance) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    row,
                )
                ids.append(int(insert.lastrowid))
            if vectors is not None:
                conn.executemany(
                    "INSERT INTO vectors (kind, item_id, model, vector) VALUES (?, ?, ?, ?)",
                    [(FACT, i, model, v.tobytes()) for i, v in zip(ids, vectors)],
                )
        return [
            Fact(i, f.subject, f.relation, f.object, f.sentence, f.source, f.confidence, f.valid_from,
                 f.valid_to, now, now, provenance=f.provenance)
            for i, f in zip(ids, prepared_facts)
        ]

    def sentence_vectors(self, sentences: Iterable[str], model: str) -> dict[str, np.ndarray]:
        """Stored vectors (made by `model`) of facts whose sentence is one of `sentences`, by sentence:
        an identical sentence need not be embedded again."""
        wanted = sorted(set(sentences))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT f.sentence, v.vector FROM facts f JOIN vectors v ON v.kind = '{FACT}' AND v.item_id = f.id"
                f" WHERE f.sentence IN ({marks}) AND v.model = ?",
                [*chunk, model],
            )
            for sentence, blob in rows:
                found.setdefault(sentence, np.frombuffer(blob, dtype=np.float32))
        return found

    def get_facts(self, ids: Iterable[int]) -> dict[int, Fact]:
        wanted = sorted({int(i) for i in ids})
        found: dict[int, Fact] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT {_FACT_COLUMNS} FROM facts WHERE id IN ({marks})", chunk):
                found[row[0]] = _fact(row)
        return found

    def get_fact(self, fact_id: int) -> Fact:
        found = self.get_facts([fact_id]).get(int(fact_id))
        if found is None:
            raise NotFoundError(f"no fact with id {fact_id}")
        return found

    def preview_update(self, fact_id: int, changes: Mapping[str, Any]) -> NewFact:
        """The validated fact `update_fact(fact_id, changes)` would write (to embed it beforehand)."""
        allowed = {"subject", "relation", "object", "sentence", "source", "confidence", "valid_from",
                   "valid_to", "provenance"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInputError(f"cannot update {sorted(unknown)}; updatable fields: {sorted(allowed)}")
        old = self.get_fact(fact_id)
        if old.deleted:
            raise InvalidInputError(f"fact {fact_id} was forgotten at {old.deleted_at}; add a new fact instead")
        merged = {k: v for k, v in asdict(old).items() if k in allowed} | dict(changes)
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
        with self._write() as conn:
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
                (new.subject, new.relation, new.object, new.sentence, new.source, new.confidence,
                 new.valid_from, new.valid_to, json.dumps(new.provenance, ensure_ascii=False), now, fact_id),
            )
            if vector is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO vectors (kind, item_id, model, vector) VALUES (?, ?, ?, ?)",
                    (FACT, fact_id, model, np.asarray(vector, dtype=np.float32).tobytes()),
                )
        return self.get_fact(fact_id)

    def revisions(self, fact_id: int) -> list[dict[str, Any]]:
        """Earlier versions of a fact (as dicts), oldest first."""
        rows = self._conn.execute(
            "SELECT row, replaced_at FROM fact_revisions WHERE fact_id = ? ORDER BY revision", (fact_id,)
        )
        return [json.loads(row) | {"replaced_at": at} for row, at in rows]

    def tombstone_facts(self, ids: Iterable[int]) -> list[Fact]:
        """Mark live facts deleted (they stay in history); returns those tombstoned now."""
        live = [f for f in self.get_facts(ids).values() if not f.deleted]
        if not live:
            return []
        now = now_timestamp()
        with self._write() as conn:
            conn.executemany("UPDATE facts SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                             [(now, f.id) for f in live])
        return [replace(f, deleted_at=now) for f in live]

    def _select_facts(
        self,
        subject: str | None,
        relation: str | None,
        obj: str | None,
        as_of: str | None,
        include_deleted: bool,
    ) -> list[Fact]:
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
        rows = self._conn.execute(f"SELECT {_FACT_COLUMNS} FROM facts {clause} ORDER BY id", args)
        return [_fact(row) for row in rows]

    def _relation_id(self, relation: str | None) -> str | None:
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
        found = self._select_facts(subject, self._relation_id(relation), object, when, include_deleted)
        if include_superseded:
            return found
        winners = self._winners(found, when or now_timestamp())
        return [f for f in found if f.id in winners]

    @staticmethod
    def _rank(fact: Fact, when: str) -> tuple[bool, str, int]:
        """Supersession order at `when`: facts in effect by then first, then the newest start, then id."""
        return (fact.start <= when, fact.start, fact.id)

    def _winners(self, facts: Sequence[Fact], when: str) -> set[int]:
        """Ids of facts not superseded among `facts` (functional: the newest start per subject/relation)."""
        best: dict[tuple[str, str], Fact] = {}
        keep: set[int] = set()
        for fact in facts:
            if fact.deleted:
                continue
            relation = self.relations._by_id.get(fact.relation)
            if relation is None or not relation.functional:
                keep.add(fact.id)
                continue
            key = (fact.subject, fact.relation)
            held = best.get(key)
            if held is None or self._rank(fact, when) > self._rank(held, when):
                best[key] = fact
        return keep | {f.id for f in best.values()}

    def current(self, subject: str, relation: str, as_of: TimeLike = None) -> Fact | None:
        """The newest live fact for (subject, relation) valid `as_of` (now when None)."""
        when = to_timestamp(as_of, "as_of") if as_of is not None else now_timestamp()
        found = self._select_facts(subject, self._relation_id(relation), None, when, False)
        if not found:
            return None
        return max(found, key=lambda f: self._rank(f, when))

    def is_current(self, fact: Fact, as_of: TimeLike = None) -> bool:
        """Live, valid `as_of`, and (for a functional relation) not superseded by a newer fact."""
        when = to_timestamp(as_of, "as_of") if as_of is not None else now_timestamp()
        if fact.deleted or not fact.valid_at(when):
            return False
        relation = self.relations._by_id.get(fact.relation)
        if relation is None or not relation.functional:
            return True
        winner = self.current(fact.subject, fact.relation, when)
        return winner is not None and winner.id == fact.id

    def current_among(self, facts: Sequence[Fact], as_of: TimeLike = None) -> set[int]:
        """Ids of `facts` that are current `as_of` (now): one query for all their (subject, relation) pairs."""
        when = to_timestamp(as_of, "as_of") if as_of is not None else now_timestamp()
        pairs = {(f.subject, f.relation) for f in facts}
        subjects = sorted({subject for subject, _ in pairs})
        rivals: list[Fact] = []
        for first in range(0, len(subjects), 400):  # `subject IN (...)` uses the (subject, relation) index
            chunk = subjects[first : first + 400]
            rows = self._conn.execute(
                f"SELECT {_FACT_COLUMNS} FROM facts WHERE subject IN ({','.join('?' * len(chunk))})"
                " AND deleted_at IS NULL AND (valid_from IS NULL OR valid_from <= ?)"
                " AND (valid_to IS NULL OR valid_to > ?)",
                [*chunk, when, when],
            )
            rivals += [f for f in map(_fact, rows) if (f.subject, f.relation) in pairs]
        return self._winners(rivals, when) & {f.id for f in facts}

    def history(self, subject: str | None = None, relation: str | None = None) -> list[Fact]:
        """Every fact ever written for the filters, forgotten and superseded ones included, by start."""
        found = self._select_facts(subject, self._relation_id(relation), None, None, True)
        return sorted(found, key=lambda f: (f.start, f.id))

    def count(self, kind: str = FACT, include_deleted: bool = False) -> int:
        table = {FACT: "facts", PASSAGE: "passages"}[kind]
        clause = "" if include_deleted else " WHERE deleted_at IS NULL"
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}{clause}").fetchone()[0])

    # -- vectors --------------------------------------------------------------------------------
    def live_ids(self, kind: str) -> np.ndarray:
        """Sorted int64 ids of live facts or passages (what a vector index must hold)."""
        table = {FACT: "facts", PASSAGE: "passages"}[kind]
        rows = self._conn.execute(f"SELECT id FROM {table} WHERE deleted_at IS NULL ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_vectors(self, kind: str, model: str, batch: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of live items whose stored vector was made by `model`, in batches."""
        table = {FACT: "facts", PASSAGE: "passages"}[kind]
        cursor = self._conn.execute(
            f"SELECT v.item_id, v.vector FROM vectors v JOIN {table} t ON t.id = v.item_id"
            " WHERE v.kind = ? AND v.model = ? AND t.deleted_at IS NULL ORDER BY v.item_id",
            (kind, model),
        )
        while rows := cursor.fetchmany(batch):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def texts_without_vectors(self, kind: str, model: str) -> list[tuple[int, str]]:
        """Live items that have no vector from `model` yet: (id, text to embed)."""
        table, column = {FACT: ("facts", "sentence"), PASSAGE: ("passages", "text")}[kind]
        rows = self._conn.execute(
            f"SELECT t.id, t.{column} FROM {table} t LEFT JOIN vectors v ON v.kind = ? AND v.item_id = t.id"
            " AND v.model = ? WHERE t.deleted_at IS NULL AND v.item_id IS NULL ORDER BY t.id",
            (kind, model),
        )
        return [(int(i), text) for i, text in rows]

    def put_vectors(self, kind: str, ids: Sequence[int], vectors: np.ndarray, model: str) -> None:
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (kind, item_id, model, vector) VALUES (?, ?, ?, ?)",
                [(kind, int(i), model, np.asarray(v, dtype=np.float32).tobytes()) for i, v in zip(ids, vectors)],
            )

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
        source = clean_name(source, "source", 200)
        title = None if title is None else clean_name(title, "title", MAX_NAME_CHARS)
        texts = [clean_text(c, "passage", MAX_SENTENCE_CHARS) for c in chunks]
        if not texts:
            raise InvalidInputError("document has no text")
        if vectors is not None and len(vectors) != len(texts):
            raise InvalidInputError(f"{len(texts)} passages but {len(vectors)} vectors")
        start, end = to_timestamp(valid_from, "valid_from"), to_timestamp(valid_to, "valid_to")
        check_validity(start, end)
        meta = clean_json_object(provenance, "provenance")
        now = now_timestamp()
        with self._write() as conn:
            doc_id = int(conn.execute(
                "INSERT INTO documents (source, title, created_at, valid_from, valid_to, provenance)"
                " VALUES (?, ?, ?, ?, ?, ?)", (source, title, now, start, end, meta),
            ).lastrowid)
            passages = []
            for position, text in enumerate(texts):
                pid = int(conn.execute(
                    "INSERT INTO passages (document_id, position, text, source, valid_from, valid_to, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (doc_id, position, text, source, start, end, now),
                ).lastrowid)
                passages.append(Passage(pid, doc_id, position, text, source, start, end, now))
                if vectors is not None:
                    conn.execute(
                        "INSERT INTO vectors (kind, item_id, model, vector) VALUES (?, ?, ?, ?)",
                        (PASSAGE, pid, model, np.asarray(vectors[position], dtype=np.float32).tobytes()),
                    )
        return Document(doc_id, source, title, now, start, end, json.loads(meta)), passages

    def get_passages(self, ids: Iterable[int]) -> dict[int, Passage]:
        wanted = sorted({int(i) for i in ids})
        found: dict[int, Passage] = {}
        for first in range(0, len(wanted), 900):
            chunk = wanted[first : first + 900]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE id IN ({marks})", chunk):
                found[row[0]] = _passage(row)
        return found

    def passages(self, document_id: int | None = None, include_deleted: bool = False) -> list[Passage]:
        where, args = [], []
        if document_id is not None:
            where.append("document_id = ?")
            args.append(int(document_id))
        if not include_deleted:
            where.append("deleted_at IS NULL")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn.execute(f"SELECT {_PASSAGE_COLUMNS} FROM passages {clause} ORDER BY id", args)
        return [_passage(row) for row in rows]

    def delete_document(self, document_id: int) -> list[Passage]:
        """Tombstone a document and its passages; returns the passages tombstoned."""
        live = self.passages(document_id)
        now = now_timestamp()
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE documents SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (now, document_id)
            ).rowcount
            if not updated:
                raise NotFoundError(f"no live document with id {document_id}")
            conn.execute("UPDATE passages SET deleted_at = ? WHERE document_id = ? AND deleted_at IS NULL",
                         (now, document_id))
        return [replace(p, deleted_at=now) for p in live]

    def redact_passage(self, passage_id: int, text: str, vector: np.ndarray | None = None, model: str = "") -> Passage:
        """Replace a live passage's text in place (same id; the old text is not kept) and its vector."""
        old = self.get_passages([passage_id]).get(int(passage_id))
        if old is None or old.deleted_at is not None:
            raise NotFoundError(f"no live passage with id {passage_id}")
        text = clean_text(text, "passage", MAX_SENTENCE_CHARS)
        with self._write() as conn:
            conn.execute("UPDATE passages SET text = ? WHERE id = ?", (text, old.id))
            if vector is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO vectors (kind, item_id, model, vector) VALUES (?, ?, ?, ?)",
                    (PASSAGE, old.id, model, np.asarray(vector, dtype=np.float32).tobytes()),
                )
        return replace(old, text=text)

    def tombstone_passages(self, ids: Iterable[int]) -> list[Passage]:
        """Mark live passages deleted; a document left with no live passage is deleted too.
        Returns the passages tombstoned now."""
        live = [p for p in self.get_passages(ids).values() if p.deleted_at is None]
        if not live:
            return []
        now = now_timestamp()
        with self._write() as conn:
            conn.executemany("UPDATE passages SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                             [(now, p.id) for p in live])
            conn.executemany(
                "UPDATE documents SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM passages WHERE document_id = ? AND deleted_at IS NULL)",
                [(now, d, d) for d in {p.document_id for p in live}],
            )
        return [replace(p, deleted_at=now) for p in live]

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
        decision = clean_name(decision, "decision", 200)
        reasons = [clean_text(r, "reason", MAX_SENTENCE_CHARS) for r in reasons]
        edit_id = None if edit_id is None else clean_name(edit_id, "edit_id", 200)
        detail_json = clean_json_object(details, "details")
        if fact_id is not None:
            self.get_fact(fact_id)
        now = now_timestamp()
        with self._write(bump=False) as conn:
            entry_id = int(conn.execute(
                "INSERT INTO edit_ledger (fact_id, edit_id, decision, reasons, details, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (fact_id, edit_id, decision, json.dumps(reasons, ensure_ascii=False), detail_json, now),
            ).lastrowid)
        return EditEntry(entry_id, fact_id, edit_id, decision, reasons, json.loads(detail_json), now)

    def redact_edit(self, entry_id: int, reasons: Sequence[str], details: Mapping[str, Any] | None) -> EditEntry:
        """Rewrite a ledger line's reasons and details in place (forgetting scrubs a forgotten fact's text
        from the lines that recorded it; what was decided, and when, stays)."""
        reasons = [clean_text(r, "reason", MAX_SENTENCE_CHARS) for r in reasons]
        detail_json = clean_json_object(details, "details")
        with self._write(bump=False) as conn:
            if not conn.execute("UPDATE edit_ledger SET reasons = ?, details = ? WHERE id = ?",
                                (json.dumps(reasons, ensure_ascii=False), detail_json, int(entry_id))).rowcount:
                raise NotFoundError(f"no ledger entry {entry_id}")
        return next(e for e in self.edits() if e.id == int(entry_id))

    def edits(self, fact_id: int | None = None) -> list[EditEntry]:
        clause, args = ("WHERE fact_id = ?", (fact_id,)) if fact_id is not None else ("", ())
        rows = self._conn.execute(
            "SELECT id, fact_id, edit_id, decision, reasons, details, created_at FROM edit_ledger "
            f"{clause} ORDER BY id", args,
        )
        return [EditEntry(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6]) for r in rows]

    # -- evidence-pool sessions -----------------------------------------------------------------
    def save_session(
        self, question: str, slots: list[dict[str, Any]], complete: bool, rounds: Sequence[EvidenceRound]
    ) -> EvidenceSession:
        question = clean_text(question, "question", MAX_SENTENCE_CHARS)
        now = now_timestamp()
        with self._write(bump=False) as conn:
            session_id = int(conn.execute(
                "INSERT INTO evidence_sessions (question, slots, complete, created_at) VALUES (?, ?, ?, ?)",
                (question, json.dumps(slots, ensure_ascii=False), int(complete), now),
            ).lastrowid)
            conn.executemany(
                "INSERT INTO evidence_rounds (session_id, round, body) VALUES (?, ?, ?)",
                [(session_id, r.round, json.dumps(asdict(r), ensure_ascii=False)) for r in rounds],
            )
        return EvidenceSession(session_id, question, slots, complete, list(rounds), now)

    def session(self, session_id: int) -> EvidenceSession:
        row = self._conn.execute(
            "SELECT id, question, slots, complete, created_at FROM evidence_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no evidence session with id {session_id}")
        rounds = [
            EvidenceRound(**json.loads(body))
            for (body,) in self._conn.execute(
                "SELECT body FROM evidence_rounds WHERE session_id = ? ORDER BY round", (session_id,)
            )
        ]
        return EvidenceSession(row[0], row[1], json.loads(row[2]), bool(row[3]), rounds, row[4])

    def session_ids(self) -> list[int]:
        return [r[0] for r in self._conn.execute("SELECT id FROM evidence_sessions ORDER BY id")]

    def delete_sessions(self, ids: Iterable[int]) -> list[int]:
        """Erase evidence sessions and their rounds (not tombstoned: a session is a cache of what a
        question found, and forgetting must not leave the found text behind). Returns the ids erased."""
        wanted = sorted({int(i) for i in ids} & set(self.session_ids()))
        if not wanted:
            return []
        with self._write(bump=False) as conn:
            conn.executemany("DELETE FROM evidence_rounds WHERE session_id = ?", [(i,) for i in wanted])
            conn.executemany("DELETE FROM evidence_sessions WHERE id = ?", [(i,) for i in wanted])
        return wanted

    # -- export ---------------------------------------------------------------------------------
    def dump(self) -> Iterator[dict[str, Any]]:
        """Every row a record export holds, as JSON-ready dicts tagged with `type`."""
        for relation in self.relations:
            if relation.source in ("custom", "learned"):  # built-in ones ship with kedit
                yield {"type": "relation"} | relation.to_json()
        for alias, canonical in self.aliases():
            yield {"type": "alias", "alias": alias, "canonical": canonical}
        for fact in self._select_facts(None, None, None, None, True):
            yield {"type": "fact"} | asdict(fact)
        documents = self._conn.execute(
            "SELECT id, source, title, created_at, valid_from, valid_to, provenance, deleted_at FROM documents"
        ).fetchall()
        for row in documents:
            doc = Document(*row[:6], provenance=json.loads(row[6]), deleted_at=row[7])
            yield {"type": "document"} | asdict(doc) | {
                "passages": [p.text for p in self.passages(doc.id, include_deleted=True)]
            }
        for entry in self.edits():
            yield {"type": "edit"} | asdict(entry)
