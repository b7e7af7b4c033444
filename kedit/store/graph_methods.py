"""The graph part of the `KnowledgeStore` facade: the multi-hop view, walks, SPARQL and entity linking.

Each method translates errors and delegates to the graph view the derived indexes keep in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import graph
from kedit.store import graph_view
from kedit.store.base import StoreBase
from kedit.store.errors import translated
from memory import Fact, validation


class GraphMethods(StoreBase):
    """Walk the stored facts as a graph (built from the record on first use)."""

    @property
    def view(self) -> graph.MultiHopGraph:
        return self._derived.graph.view

    @property
    def linker(self) -> graph.EntityLinker:
        return self._derived.graph.linker

    def neighbours(self, entity: str, hops: int = 1) -> list[Fact]:
        """Current facts among entities within `hops` steps of `entity` (either direction)."""
        with translated():
            return self._derived.graph.neighbours(entity, hops)

    def chain(self, entity: str, relations: Sequence[str], as_of: Any = None) -> list[Fact]:
        """Follow `relations` from `entity` through the facts in force `as_of`; stops where one is missing."""
        with translated():
            return graph_view.chain(self.record, entity, relations, as_of)

    def path(self, a: str, b: str) -> list[Fact] | None:
        """The shortest chain of current facts linking entities `a` and `b`; None when unconnected."""
        with translated():
            return self._derived.graph.path(a, b)

    def sparql(self, query: str, bindings: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
        """SELECT over the RDF graph; values go in `bindings` (use `graph.entity_iri(name)` for entities)."""
        with translated():
            assert self._derived.triples is not None
            return self._derived.triples.query(query, bindings)

    def link_entity(self, text: str) -> str | None:
        """The canonical entity name `text` refers to (names, aliases, then embedding similarity)."""
        with translated():
            text = validation.clean_name(text, "entity text")
        return self.linker.link(text)

    def add_aliases(self, canonical: str, aliases: Iterable[str]) -> None:
        aliases = list(aliases)
        with self._writing():
            self.record.add_aliases(canonical, aliases)
        self._derived.graph.aliases_added(canonical, aliases)
