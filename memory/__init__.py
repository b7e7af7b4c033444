"""memory: the system of record (SQLite, WAL) for facts, passages, the edit ledger and evidence sessions.

>>> from memory import NewFact, Record
>>> rec = Record.open(":memory:")
>>> rec.add_facts([NewFact("Ellie Kemper", "P27", "Croatia", "Ellie Kemper is a citizen of Croatia")])[0].object
'Croatia'
"""

from memory.errors import (
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    RecordError,
    SchemaError,
    UnknownRelationError,
    WriterLockedError,
)
from memory.record import Record
from memory.relations import Relation, RelationVocabulary
from memory.rows import (
    Document,
    EditEntry,
    EvidenceRound,
    EvidenceSession,
    Fact,
    NewFact,
    Passage,
)
from memory.writer_lock import WriterLock

__all__ = [
    "Document",
    "EditEntry",
    "EvidenceRound",
    "EvidenceSession",
    "Fact",
    "InvalidInputError",
    "NewFact",
    "NotFoundError",
    "Passage",
    "ReadOnlyError",
    "Record",
    "RecordError",
    "Relation",
    "RelationVocabulary",
    "SchemaError",
    "UnknownRelationError",
    "WriterLock",
    "WriterLockedError",
]
