"""The stored embedding vectors of facts and passages (one per item, tagged with the model that made it).

Derived vector indexes are rebuilt from these rows, so a rebuild embeds only what has no vector yet.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from memory.database import Database
from memory.rows import FACT, PASSAGE

TABLES = {FACT: "facts", PASSAGE: "passages"}
_INSERT = "INSERT INTO vectors (kind, item_id, model, vector) VALUES (?, ?, ?, ?)"
_REPLACE = "INSERT OR REPLACE INTO vectors (kind, item_id, model, vector) VALUES (?, ?, ?, ?)"


def insert_vectors(
    conn: sqlite3.Connection,
    kind: str,
    ids: Iterable[int],
    vectors: Iterable[np.ndarray],
    model: str,
    *,
    replace: bool = False,
) -> None:
    """Write vectors inside the caller's transaction (`replace=True` overwrites an item's earlier one)."""
    conn.executemany(
        _REPLACE if replace else _INSERT,
        [(kind, int(i), model, np.asarray(v, dtype=np.float32).tobytes()) for i, v in zip(ids, vectors)],
    )


class VectorTable:
    """Reads and writes of the `vectors` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def live_ids(self, kind: str) -> np.ndarray:
        """Sorted int64 ids of live facts or passages (what a vector index must hold)."""
        table = TABLES[kind]
        rows = self._db.conn.execute(
            f"SELECT id FROM {table} WHERE deleted_at IS NULL ORDER BY id"
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_vectors(
        self, kind: str, model: str, batch: int = 20_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of live items whose stored vector was made by `model`, in batches."""
        table = TABLES[kind]
        cursor = self._db.conn.execute(
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
        rows = self._db.conn.execute(
            f"SELECT t.id, t.{column} FROM {table} t LEFT JOIN vectors v ON v.kind = ? AND v.item_id = t.id"
            " AND v.model = ? WHERE t.deleted_at IS NULL AND v.item_id IS NULL ORDER BY t.id",
            (kind, model),
        )
        return [(int(i), text) for i, text in rows]

    def put_vectors(self, kind: str, ids: Sequence[int], vectors: np.ndarray, model: str) -> None:
        with self._db.write() as conn:
            insert_vectors(conn, kind, ids, vectors, model, replace=True)
