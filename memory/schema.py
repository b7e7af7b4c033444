"""The record's schema as numbered migrations; `PRAGMA user_version` says which have run.

>>> import sqlite3
>>> conn = sqlite3.connect(":memory:", isolation_level=None); migrate(conn)
>>> conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
True
"""

from __future__ import annotations

import sqlite3

from memory.errors import SchemaError

MIGRATIONS: list[str] = [
    # 1: facts, passages, vectors, vocabulary, aliases, ledger, evidence sessions.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE facts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL, relation TEXT NOT NULL, object TEXT NOT NULL, sentence TEXT NOT NULL,
        source TEXT NOT NULL, confidence REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
        valid_from TEXT, valid_to TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        provenance TEXT NOT NULL DEFAULT '{}', deleted_at TEXT,
        CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_to > valid_from)
    );
    CREATE INDEX facts_subject_relation ON facts (subject, relation);
    CREATE INDEX facts_object ON facts (object);
    CREATE TABLE fact_revisions (
        fact_id INTEGER NOT NULL REFERENCES facts (id), revision INTEGER NOT NULL,
        row TEXT NOT NULL, replaced_at TEXT NOT NULL, PRIMARY KEY (fact_id, revision)
    );
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, title TEXT,
        created_at TEXT NOT NULL, valid_from TEXT, valid_to TEXT,
        provenance TEXT NOT NULL DEFAULT '{}', deleted_at TEXT
    );
    CREATE TABLE passages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id INTEGER NOT NULL REFERENCES documents (id), position INTEGER NOT NULL,
        text TEXT NOT NULL, source TEXT NOT NULL, valid_from TEXT, valid_to TEXT,
        created_at TEXT NOT NULL, deleted_at TEXT
    );
    CREATE INDEX passages_document ON passages (document_id);
    CREATE TABLE vectors (
        kind TEXT NOT NULL, item_id INTEGER NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL,
        PRIMARY KEY (kind, item_id)
    );
    CREATE TABLE relations (id TEXT PRIMARY KEY, definition TEXT NOT NULL);
    CREATE TABLE aliases (
        alias TEXT NOT NULL, canonical TEXT NOT NULL, PRIMARY KEY (alias, canonical)
    );
    CREATE TABLE edit_ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT, fact_id INTEGER REFERENCES facts (id), edit_id TEXT,
        decision TEXT NOT NULL, reasons TEXT NOT NULL, details TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE TABLE evidence_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, question TEXT NOT NULL, slots TEXT NOT NULL,
        complete INTEGER NOT NULL, created_at TEXT NOT NULL
    );
    CREATE TABLE evidence_rounds (
        session_id INTEGER NOT NULL REFERENCES evidence_sessions (id), round INTEGER NOT NULL,
        body TEXT NOT NULL, PRIMARY KEY (session_id, round)
    );
    INSERT INTO meta (key, value) VALUES ('record_version', '0');
    """,
    # 2: look facts up by sentence, so an identical sentence reuses its stored vector instead of re-embedding.
    """
    CREATE INDEX facts_sentence ON facts (sentence);
    """,
]


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Run the migrations not yet applied, each in its own transaction (`conn` in autocommit mode)."""
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise SchemaError(f"record schema {current} is newer than this kedit knows ({len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.execute("ROLLBACK")
            raise SchemaError(f"migration {number} failed: {exc}") from exc
