"""The bookkeeping part of the `KnowledgeStore` facade: the relation vocabulary, the edit ledger and
saved evidence-pool sessions, all kept in the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import memory
from kedit.store.base import StoreBase
from kedit.store.errors import translated
from memory import EditEntry, EvidenceSession, Relation


class LedgerMethods(StoreBase):
    """Vocabulary, ledger and evidence sessions."""

    @property
    def relations(self) -> memory.RelationVocabulary:
        return self.record.relations

    def register_relation(
        self,
        id: str,
        label: str,
        *,
        cloze: str,
        question: str,
        functional: bool = True,
        aliases: Sequence[str] = (),
        source: str = "custom",
    ) -> Relation:
        """Add a relation to the vocabulary (persisted); `source` says where it came from ("custom", "learned")."""
        with self._writing():
            relation = Relation(id, label, cloze, question, functional, tuple(aliases), source=source)
            return self.record.register_relation(relation)

    def record_edit(
        self,
        *,
        decision: str,
        reasons: Sequence[str] = (),
        fact_id: int | None = None,
        edit_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> EditEntry:
        """Write a ledger line linking a fact, a parametric edit record id, and the router's decision."""
        with self._writing():
            return self.record.record_edit(
                decision=decision, reasons=reasons, fact_id=fact_id, edit_id=edit_id, details=details
            )

    def redact_edit(
        self, entry_id: int, reasons: Sequence[str], details: Mapping[str, Any] | None
    ) -> EditEntry:
        """Rewrite one ledger line's reasons and details (used by forgetting to scrub forgotten text)."""
        with self._writing():
            return self.record.redact_edit(entry_id, reasons, details)

    def edits(self, fact_id: int | None = None) -> list[EditEntry]:
        return self.record.edits(fact_id)

    @property
    def ledger(self) -> list[EditEntry]:
        return self.record.edits()

    def evidence_session(self, session_id: int) -> EvidenceSession:
        with translated():
            return self.record.session(session_id)

    def evidence_sessions(self) -> list[EvidenceSession]:
        """Every saved evidence-pool session, oldest first."""
        with translated():
            return [self.record.session(i) for i in self.record.session_ids()]

    def delete_evidence_sessions(self, session_ids: Iterable[int]) -> list[int]:
        """Erase saved evidence-pool sessions (with their rounds); returns the ids erased."""
        with self._writing():
            return self.record.delete_sessions(session_ids)
