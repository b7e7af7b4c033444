"""The edit ledger: one line per knowledge edit (which fact, which parametric edit, what was decided, why)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from memory.database import Database, inserted_id
from memory.errors import NotFoundError
from memory.rows import EditEntry, Fact
from memory.validation import MAX_SENTENCE_CHARS, clean_json_object, clean_name, clean_text, now_timestamp


class EditLedger:
    """The `edit_ledger` table; `get_fact` checks that a line's fact exists (NotFoundError if not)."""

    def __init__(self, db: Database, get_fact: Callable[[int], Fact]) -> None:
        self._db = db
        self._get_fact = get_fact

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
            self._get_fact(fact_id)
        now = now_timestamp()
        with self._db.write(bump=False) as conn:
            entry_id = inserted_id(
                conn.execute(
                    "INSERT INTO edit_ledger (fact_id, edit_id, decision, reasons, details, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (fact_id, edit_id, decision, json.dumps(reasons, ensure_ascii=False), detail_json, now),
                )
            )
        return EditEntry(entry_id, fact_id, edit_id, decision, reasons, json.loads(detail_json), now)

    def redact_edit(
        self, entry_id: int, reasons: Sequence[str], details: Mapping[str, Any] | None
    ) -> EditEntry:
        """Rewrite a ledger line's reasons and details in place (forgetting scrubs a forgotten fact's text
        from the lines that recorded it; what was decided, and when, stays)."""
        reasons = [clean_text(r, "reason", MAX_SENTENCE_CHARS) for r in reasons]
        detail_json = clean_json_object(details, "details")
        with self._db.write(bump=False) as conn:
            if not conn.execute(
                "UPDATE edit_ledger SET reasons = ?, details = ? WHERE id = ?",
                (json.dumps(reasons, ensure_ascii=False), detail_json, int(entry_id)),
            ).rowcount:
                raise NotFoundError(f"no ledger entry {entry_id}")
        return next(e for e in self.edits() if e.id == int(entry_id))

    def edits(self, fact_id: int | None = None) -> list[EditEntry]:
        clause, args = ("WHERE fact_id = ?", (fact_id,)) if fact_id is not None else ("", ())
        rows = self._db.conn.execute(
            "SELECT id, fact_id, edit_id, decision, reasons, details, created_at FROM edit_ledger "
            f"{clause} ORDER BY id",
            args,
        )
        return [EditEntry(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6]) for r in rows]
