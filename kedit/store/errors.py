"""The store's errors: all subclass `kedit.errors.StoreError`, and nothing stored changed when raised."""

from __future__ import annotations

from kedit.errors import StoreError


class StoreInputError(StoreError, ValueError):
    """A value is malformed: empty, too long, not UTF-8, control characters, bad time range..."""


class UnknownRelationError(StoreInputError, LookupError):
    """The relation is not in the vocabulary; register it with `KnowledgeStore.register_relation`."""


class StorePathError(StoreInputError):
    """The store path or name is not acceptable (traversal, not a directory...)."""


class StoreLockedError(StoreError):
    """Another process has the store open for writing."""


class StoreNotFoundError(StoreError, LookupError):
    """No such store, fact, passage or session."""


class ReadOnlyStoreError(StoreError):
    """The store was opened read-only."""


class StoreCorruptError(StoreError):
    """The record itself is unreadable (indexes are rebuilt instead of raising this)."""
