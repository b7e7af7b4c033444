"""The record's SQLite database: opening it (WAL, migrations, the writer lock) and write transactions.

Every write that changes facts, passages or vectors bumps `version` (the `record_version` meta row),
which derived indexes store in their manifests to tell whether they are stale.

>>> db = Database.open(":memory:")
>>> with db.write() as conn:
...     _ = conn.execute("INSERT INTO aliases (alias, canonical) VALUES ('Ellie', 'Ellie Kemper')")
>>> db.version
1
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memory.errors import InvalidInputError, NotFoundError, ReadOnlyError, SchemaError
from memory.schema import migrate, schema_version
from memory.writer_lock import WriterLock


class Database:
    """One SQLite connection in autocommit mode; `write()` wraps a transaction."""

    def __init__(self, conn: sqlite3.Connection, path: str, read_only: bool, lock: WriterLock | None) -> None:
        self.conn = conn
        self.path = path
        self.read_only = read_only
        self._lock = lock

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Database:
        """Open (creating when writable) the database at `path`; `":memory:"` gives a throwaway one.

        A writable open takes `<path>.lock` (WriterLockedError if another writer has it).
        """
        path = str(path)
        lock = None
        try:
            if read_only:
                if path == ":memory:" or not Path(path).is_file():
                    raise NotFoundError(f"no record at {path} to open read-only")
                conn = sqlite3.connect(
                    Path(path).resolve().as_uri() + "?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
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
        self.conn.close()
        if self._lock is not None:
            self._lock.release()

    @property
    def version(self) -> int:
        """Bumped by every committed change to facts, passages or vectors."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'record_version'").fetchone()
        return int(row[0])

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.write(bump=False) as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def write(self, bump: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: committed (bumping `version` when `bump`) when the block ends, else rolled back."""
        if self.read_only:
            raise ReadOnlyError(f"{self.path} is open read-only")
        conn = self.conn
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


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT just wrote (sqlite3 types `lastrowid` as optional; after an INSERT it is set)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise SchemaError("an INSERT returned no row id")
    return rowid


def in_chunks(values: list, size: int = 900) -> Iterator[tuple[list, str]]:
    """`values` in slices of `size` with their `?,?,...` placeholders (SQLite caps bound parameters)."""
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        yield chunk, ",".join("?" * len(chunk))
