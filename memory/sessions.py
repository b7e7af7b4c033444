"""Evidence-pool sessions: a question, its slots and the rounds that bound them (a cache of what was found)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from memory.database import Database, inserted_id
from memory.errors import NotFoundError
from memory.rows import EvidenceRound, EvidenceSession
from memory.validation import MAX_SENTENCE_CHARS, clean_text, now_timestamp


class EvidenceSessions:
    """The `evidence_sessions` and `evidence_rounds` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save_session(
        self, question: str, slots: list[dict[str, Any]], complete: bool, rounds: Sequence[EvidenceRound]
    ) -> EvidenceSession:
        question = clean_text(question, "question", MAX_SENTENCE_CHARS)
        now = now_timestamp()
        with self._db.write(bump=False) as conn:
            session_id = inserted_id(
                conn.execute(
                    "INSERT INTO evidence_sessions (question, slots, complete, created_at) VALUES (?, ?, ?, ?)",
                    (question, json.dumps(slots, ensure_ascii=False), int(complete), now),
                )
            )
            conn.executemany(
                "INSERT INTO evidence_rounds (session_id, round, body) VALUES (?, ?, ?)",
                [(session_id, r.round, json.dumps(asdict(r), ensure_ascii=False)) for r in rounds],
            )
        return EvidenceSession(session_id, question, slots, complete, list(rounds), now)

    def session(self, session_id: int) -> EvidenceSession:
        conn = self._db.conn
        row = conn.execute(
            "SELECT id, question, slots, complete, created_at FROM evidence_sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no evidence session with id {session_id}")
        rounds = [
            EvidenceRound(**json.loads(body))
            for (body,) in conn.execute(
                "SELECT body FROM evidence_rounds WHERE session_id = ? ORDER BY round", (session_id,)
            )
        ]
        return EvidenceSession(row[0], row[1], json.loads(row[2]), bool(row[3]), rounds, row[4])

    def session_ids(self) -> list[int]:
        return [r[0] for r in self._db.conn.execute("SELECT id FROM evidence_sessions ORDER BY id")]

    def delete_sessions(self, ids: Iterable[int]) -> list[int]:
        """Erase evidence sessions and their rounds (not tombstoned: a session is a cache of what a
        question found, and forgetting must not leave the found text behind). Returns the ids erased."""
        wanted = sorted({int(i) for i in ids} & set(self.session_ids()))
        if not wanted:
            return []
        with self._db.write(bump=False) as conn:
            conn.executemany("DELETE FROM evidence_rounds WHERE session_id = ?", [(i,) for i in wanted])
            conn.executemany("DELETE FROM evidence_sessions WHERE id = ?", [(i,) for i in wanted])
        return wanted
