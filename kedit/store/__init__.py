"""kedit.store: the knowledge store facade over memory (record), retrieval (vectors) and graph.

>>> from kedit.store import KnowledgeStore
>>> with KnowledgeStore.open("/tmp/kb-example") as store:          # doctest: +SKIP
...     store.add_fact("Ellie Kemper", "P27", "Croatia")
"""

from kedit.store.errors import (
    ReadOnlyStoreError,
    StoreCorruptError,
    StoreInputError,
    StoreLockedError,
    StoreNotFoundError,
    StorePathError,
    UnknownRelationError,
)
from kedit.store.hit import Hit
from kedit.store.knowledge_store import KnowledgeStore
from kedit.store.store_path import store_name_path
from memory import Fact, NewFact, Passage, Relation

__all__ = [
    "Fact",
    "Hit",
    "KnowledgeStore",
    "NewFact",
    "Passage",
    "ReadOnlyStoreError",
    "Relation",
    "StoreCorruptError",
    "StoreInputError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StorePathError",
    "UnknownRelationError",
    "store_name_path",
]
