"""The state every part of the `KnowledgeStore` facade shares, and its write guard.

`KnowledgeStore` sets these attributes; the method groups in `graph_methods` and `ledger` stand on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import memory
from kedit.store.errors import ReadOnlyStoreError, translated
from kedit.store.indexes import DerivedIndexes


class StoreBase:
    """The record, the derived indexes, and the guard every write goes through."""

    root: Path
    record: memory.Record
    read_only: bool
    _derived: DerivedIndexes

    def _require_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.root} is open read-only")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Translate errors; mark indexes in sync only if the whole write went through."""
        self._require_writable()
        before = self.record.version
        in_sync = self._derived.synced_version == before
        with translated():
            yield
        if in_sync:
            self._derived.synced_version = self.record.version
