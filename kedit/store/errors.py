"""The store's errors: all subclass `kedit.errors.StoreError`, and nothing stored changed when raised.

`translated()` turns the errors of the floors below (memory, retrieval, graph) into these.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import graph
import memory
import retrieval
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


@contextmanager
def translated() -> Iterator[None]:
    """Ground-floor errors (memory, retrieval, graph) as StoreError subclasses with the same message."""
    try:
        yield
    except StoreError:
        raise
    except memory.UnknownRelationError as exc:
        raise UnknownRelationError(str(exc)) from None
    except (memory.InvalidInputError, retrieval.VectorInputError, graph.GraphInputError) as exc:
        raise StoreInputError(str(exc)) from None
    except memory.WriterLockedError as exc:
        raise StoreLockedError(str(exc)) from None
    except memory.ReadOnlyError as exc:
        raise ReadOnlyStoreError(str(exc)) from None
    except memory.NotFoundError as exc:
        raise StoreNotFoundError(str(exc)) from None
    except (memory.SchemaError, graph.GraphStoreError) as exc:
        raise StoreCorruptError(str(exc)) from None
