"""Documents and their passages (the chunks passage retrieval returns), with their vectors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from memory.database import Database, in_chunks, inserted_id
from memory.errors import InvalidInputError, NotFoundError
from memory.rows import PASSAGE, Document, Passage
from memory.validation import (
    MAX_NAME_CHARS,
    MAX_SENTENCE_CHARS,
    TimeLike,
    check_validity,
    clean_json_object,
    clean_name,
    clean_text,
    now_timestamp,
    to_timestamp,
)
from memory.vectors import insert_vectors

PASSAGE_COLUMNS = "id, document_id, position, text, source, valid_from, valid_to, created_at, deleted_at"


class PassageTable:
    """The `documents` and `passages` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
        with self._db.write() as conn:
            doc_id = inserted_id(
                conn.execute(
                    "INSERT INTO documents (source, title, created_at, valid_from, valid_to, provenance)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (source, title, now, start, end, meta),
                )
            )
            passages = []
            for position, text in enumerate(texts):
                pid = inserted_id(
                    conn.execute(
                        "INSERT INTO passages (document_id, position, text, source, valid_from, valid_to, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (doc_id, position, text, source, start, end, now),
                    )
                )
                passages.append(Passage(pid, doc_id, position, text, source, start, end, now))
            if vectors is not None:
                insert_vectors(conn, PASSAGE, [p.id for p in passages], vectors, model)
        return Document(doc_id, source, title, now, start, end, json.loads(meta)), passages

    def documents(self) -> list[Document]:
        """Every document, forgotten ones too, by id."""
        rows = self._db.conn.execute(
            "SELECT id, source, title, created_at, valid_from, valid_to, provenance, deleted_at FROM documents"
            " ORDER BY id"
        ).fetchall()
        return [
            Document(*row[:6], provenance=json.loads(row[6]), deleted_at=row[7])  # type: ignore[misc]
            for row in rows
        ]  # mypy cannot count a sliced row: six positional fields, then the two named

    def get_passages(self, ids: Iterable[int]) -> dict[int, Passage]:
        found: dict[int, Passage] = {}
        for chunk, marks in in_chunks(sorted({int(i) for i in ids})):
            for row in self._db.conn.execute(
                f"SELECT {PASSAGE_COLUMNS} FROM passages WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = Passage(*row)
        return found

    def passages(self, document_id: int | None = None, include_deleted: bool = False) -> list[Passage]:
        where, args = [], []
        if document_id is not None:
            where.append("document_id = ?")
            args.append(int(document_id))
        if not include_deleted:
            where.append("deleted_at IS NULL")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.conn.execute(f"SELECT {PASSAGE_COLUMNS} FROM passages {clause} ORDER BY id", args)
        return [Passage(*row) for row in rows]

    def delete_document(self, document_id: int) -> list[Passage]:
        """Tombstone a document and its passages; returns the passages tombstoned."""
        live = self.passages(document_id)
        now = now_timestamp()
        with self._db.write() as conn:
            updated = conn.execute(
                "UPDATE documents SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (now, document_id)
            ).rowcount
            if not updated:
                raise NotFoundError(f"no live document with id {document_id}")
            conn.execute(
                "UPDATE passages SET deleted_at = ? WHERE document_id = ? AND deleted_at IS NULL",
                (now, document_id),
            )
        return [replace(p, deleted_at=now) for p in live]

    def redact_passage(
        self, passage_id: int, text: str, vector: np.ndarray | None = None, model: str = ""
    ) -> Passage:
        """Replace a live passage's text in place (same id; the old text is not kept) and its vector."""
        old = self.get_passages([passage_id]).get(int(passage_id))
        if old is None or old.deleted_at is not None:
            raise NotFoundError(f"no live passage with id {passage_id}")
        text = clean_text(text, "passage", MAX_SENTENCE_CHARS)
        with self._db.write() as conn:
            conn.execute("UPDATE passages SET text = ? WHERE id = ?", (text, old.id))
            if vector is not None:
                insert_vectors(conn, PASSAGE, [old.id], [vector], model, replace=True)
        return replace(old, text=text)

    def tombstone_passages(self, ids: Iterable[int]) -> list[Passage]:
        """Mark live passages deleted; a document left with no live passage is deleted too.
        Returns the passages tombstoned now."""
        live = [p for p in self.get_passages(ids).values() if p.deleted_at is None]
        if not live:
            return []
        now = now_timestamp()
        with self._db.write() as conn:
            conn.executemany(
                "UPDATE passages SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                [(now, p.id) for p in live],
            )
            conn.executemany(
                "UPDATE documents SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM passages WHERE document_id = ? AND deleted_at IS NULL)",
                [(now, d, d) for d in {p.document_id for p in live}],
            )
        return [replace(p, deleted_at=now) for p in live]
