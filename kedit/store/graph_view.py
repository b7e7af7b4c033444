"""The store's graph side: the RDF statements kept in step with the record, and walks over current facts.

The RDF graph (`graph.TripleStore`) holds one statement per (subject, relation, object, source) of a
live fact and is persisted; the multi-hop view and the entity linker live in memory, are built from
the record on first use, and are kept in step with each write after that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

import graph
import memory
from kedit.store.errors import StoreInputError
from memory import Fact, validation


def fill_triples(record: memory.Record, triples: graph.TripleStore) -> None:
    """Add a statement for every fact in the record (in batches, to bound memory)."""
    batch: list[tuple[str, str, str, str]] = []
    for fact in record.facts():
        batch.append((fact.subject, fact.relation, fact.object, fact.source))
        if len(batch) >= 20_000:
            triples.add(batch)
            batch = []
    triples.add(batch)


def unlink_triple(record: memory.Record, triples: graph.TripleStore, fact: Fact) -> None:
    """Drop a fact's RDF statement unless another live fact states the same thing in that source."""
    twins = record.facts(fact.subject, fact.relation, fact.object)
    if not any(t.id != fact.id and t.source == fact.source for t in twins):
        triples.remove(fact.subject, fact.relation, fact.object, fact.source)


def facts_of(record: memory.Record, edges: Iterable[graph.Edge]) -> list[Fact]:
    """The facts behind `edges` (each edge is keyed by its fact id), in order."""
    edges = list(edges)
    rows = record.get_facts(e.key for e in edges)
    return [rows[e.key] for e in edges]


def chain(record: memory.Record, entity: str, relations: Sequence[str], as_of: Any = None) -> list[Fact]:
    """Follow `relations` from `entity` through the facts in force `as_of`; stops where one is missing."""
    if isinstance(relations, str):
        raise StoreInputError("relations must be a list of relation ids or labels, not one string")
    walk: list[Fact] = []
    here = entity
    for relation in relations:
        fact = record.current(here, relation, as_of)
        if fact is None:
            break
        walk.append(fact)
        here = fact.object
    return walk


class GraphView:
    """The multi-hop view of current facts and the entity linker over the record's names."""

    def __init__(self, record: memory.Record, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._record = record
        self._embed = embed
        self._view: graph.MultiHopGraph | None = None
        self._linker: graph.EntityLinker | None = None

    @property
    def view(self) -> graph.MultiHopGraph:
        if self._view is None:
            view = graph.MultiHopGraph()
            for fact in self._record.facts(include_superseded=False, as_of=validation.now_timestamp()):
                view.add(fact.subject, fact.relation, fact.object, key=fact.id)
            self._view = view
        return self._view

    @property
    def linker(self) -> graph.EntityLinker:
        if self._linker is None:
            linker = graph.EntityLinker(embed=self._embed)
            linker.add_names(self._record.names())  # the live facts' subjects and objects, each once
            for alias, canonical in self._record.aliases():
                linker.add(canonical, [alias])
            self._linker = linker
        return self._linker

    def reset(self) -> None:
        """Drop the view and the linker; they are rebuilt from the record on next use."""
        self._view = None
        self._linker = None

    def resync(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Re-read the current facts of each (subject, relation) into the view, if it was built."""
        if self._view is None:
            return
        now = validation.now_timestamp()
        for subject, relation in set(pairs):
            for fact in self._record.facts(subject, relation, include_deleted=True):
                self._view.remove(fact.id)
            for fact in self._record.facts(subject, relation, as_of=now, include_superseded=False):
                self._view.add(fact.subject, fact.relation, fact.object, key=fact.id)

    def facts_added(self, stored: Sequence[Fact]) -> None:
        self.resync((f.subject, f.relation) for f in stored)
        if self._linker is not None:
            for fact in stored:
                self._linker.add(fact.subject)
                self._linker.add(fact.object)

    def facts_removed(self, gone: Sequence[Fact]) -> None:
        self.resync((f.subject, f.relation) for f in gone)
        if gone:
            self._linker = None  # names only a forgotten fact held must not link any more: rebuilt on use

    def aliases_added(self, canonical: str, aliases: list[str]) -> None:
        if self._linker is not None:
            self._linker.add(canonical, aliases)

    # -- walks ----------------------------------------------------------------------------------
    def neighbours(self, entity: str, hops: int = 1) -> list[Fact]:
        """Current facts among entities within `hops` steps of `entity` (either direction)."""
        return facts_of(self._record, self.view.neighbourhood(entity, hops))

    def path(self, a: str, b: str) -> list[Fact] | None:
        """The shortest chain of current facts linking entities `a` and `b`; None when unconnected."""
        edges = self.view.path(a, b)
        return None if edges is None else facts_of(self._record, edges)
