"""The same model over an empty knowledge base: where out-of-scope questions are answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ClosedBookView:
    """A model with an empty store of its own (a temporary directory removed on close)."""

    bundle: Any
    store: Any
    scope: Any
    directory: str

    @classmethod
    def open(cls, bundle, embedder) -> ClosedBookView:
        import tempfile

        from kedit.scope import ScopeModel
        from kedit.store import KnowledgeStore

        directory = tempfile.mkdtemp(prefix="kedit-closed-book-")
        store = KnowledgeStore.open(directory, embedder=embedder)
        return cls(bundle, store, ScopeModel(store), directory)

    def close(self) -> None:
        import shutil

        try:
            self.store.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


__all__ = ["ClosedBookView"]
