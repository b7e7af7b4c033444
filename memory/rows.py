"""The rows of the record as frozen dataclasses (what readers get back).

>>> f = NewFact("Ellie Kemper", "P27", "Croatia")
>>> f.relation
'P27'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The two kinds of searchable row; each has its own table and its vectors in `vectors`.
FACT = "fact"
PASSAGE = "passage"


def _valid_at(valid_from: str | None, valid_to: str | None, when: str | None) -> bool:
    if when is None:
        return True
    return (valid_from is None or valid_from <= when) and (valid_to is None or when < valid_to)


@dataclass(frozen=True)
class NewFact:
    """A fact to write (before validation): the record fills id and times."""

    subject: str
    relation: str
    object: str
    sentence: str | None = None
    source: str = "user"
    confidence: float = 1.0
    valid_from: Any = None
    valid_to: Any = None
    provenance: dict[str, Any] | None = None


@dataclass(frozen=True)
class Fact:
    """One stored (subject, relation, object) statement with its sentence, time validity and provenance."""

    id: int
    subject: str
    relation: str
    object: str
    sentence: str
    source: str
    confidence: float
    valid_from: str | None
    valid_to: str | None
    created_at: str
    updated_at: str
    provenance: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    deleted_at: str | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.subject, self.relation, self.object)

    @property
    def start(self) -> str:
        """When the fact took effect, for supersession: valid_from, else when it was written."""
        return self.valid_from or self.created_at

    def valid_at(self, when: str | None) -> bool:
        """True when `when` (a timestamp from `to_timestamp`, or None for 'any time') is in its validity."""
        return _valid_at(self.valid_from, self.valid_to, when)


@dataclass(frozen=True)
class Document:
    id: int
    source: str
    title: str | None
    created_at: str
    valid_from: str | None
    valid_to: str | None
    provenance: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    deleted_at: str | None = None


@dataclass(frozen=True)
class Passage:
    """A chunk of a document, the unit of passage retrieval."""

    id: int
    document_id: int
    position: int
    text: str
    source: str
    valid_from: str | None
    valid_to: str | None
    created_at: str
    deleted_at: str | None = None

    def valid_at(self, when: str | None) -> bool:
        return _valid_at(self.valid_from, self.valid_to, when)


@dataclass(frozen=True)
class EditEntry:
    """The ledger's line for one knowledge edit: the parametric edit id and the router's decision."""

    id: int
    fact_id: int | None
    edit_id: str | None
    decision: str
    reasons: list[str]
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    created_at: str = ""


@dataclass(frozen=True)
class EvidenceRound:
    """One round of an evidence-pool session: the query sent, the evidence found, the slots bound."""

    round: int
    queries: list[str]
    hits: list[dict[str, Any]]
    bound: list[dict[str, Any]]
    new_evidence: int


@dataclass(frozen=True)
class EvidenceSession:
    id: int
    question: str
    slots: list[dict[str, Any]]
    complete: bool
    rounds: list[EvidenceRound]
    created_at: str
