"""The same model over an empty knowledge base: where out-of-scope questions are answered, and the weights
they are answered with (`store_backed_edits`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kedit.router import Route
from kedit.weights import EDIT


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


def store_backed_edits(changes: Iterable[Any], ledger: Iterable[Any]) -> set[str]:
    """Ids of the live weight edits whose every fact the router also stored (route `both`): a question in
    scope of such a fact is answered from the store, so out of scope the model answers without the edit,
    as it would without kedit (a batch edit on a 135M model moves unrelated answers: CounterFact val,
    100 facts through the router, other subjects' prompts unchanged 0.48 with the edit live). Weights-only
    edits (route `parametric`, forced by the caller) and unlearning runs stay in.

    >>> from types import SimpleNamespace as NS
    >>> changes = [NS(kind="edit", id="a"), NS(kind="edit", id="b"), NS(kind="unlearn", id="c")]
    >>> ledger = [NS(edit_id="a", decision="both"), NS(edit_id="b", decision="parametric"),
    ...           NS(edit_id="c", decision="remove")]
    >>> sorted(store_backed_edits(changes, ledger))
    ['a']
    """
    edits = {c.id for c in changes if c.kind == EDIT}
    decisions: dict[str, set[str]] = {}
    for entry in ledger:
        if entry.edit_id in edits:
            decisions.setdefault(entry.edit_id, set()).add(entry.decision)
    return {i for i, seen in decisions.items() if seen == {Route.BOTH.value}}


__all__ = ["ClosedBookView", "store_backed_edits"]
