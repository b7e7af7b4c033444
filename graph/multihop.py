"""A networkx MultiDiGraph view of facts for multi-hop walks: relation chains, k-hop neighbourhoods,
shortest paths. Each edge carries the relation id and the fact id (its key), so answers cite facts.

>>> view = MultiHopGraph()
>>> view.add("Ellie Kemper", "P27", "Croatia", key=1)
>>> view.add("Croatia", "P35", "Kolinda Grabar-Kitarović", key=2)
>>> [e.object for e in view.chain("Ellie Kemper", ["P27", "P35"])]
['Croatia', 'Kolinda Grabar-Kitarović']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from graph.errors import GraphInputError


@dataclass(frozen=True)
class Edge:
    subject: str
    relation: str
    object: str
    key: int


class MultiHopGraph:
    """Entities as nodes, one edge per fact (key = fact id)."""

    def __init__(self) -> None:
        self.graph = nx.MultiDiGraph()
        self._edges: dict[int, tuple[str, str]] = {}

    def add(self, subject: str, relation: str, obj: str, key: int) -> None:
        if key in self._edges:
            self.remove(key)
        self.graph.add_edge(subject, obj, key=key, relation=relation)
        self._edges[key] = (subject, obj)

    def remove(self, key: int) -> None:
        ends = self._edges.pop(key, None)
        if ends is None:
            return
        self.graph.remove_edge(*ends, key=key)
        for node in ends:
            if node in self.graph and self.graph.degree(node) == 0:
                self.graph.remove_node(node)

    def __len__(self) -> int:
        return len(self._edges)

    def __contains__(self, entity: object) -> bool:
        return entity in self.graph

    def _edge(self, u: str, v: str, key: int) -> Edge:
        return Edge(u, self.graph.edges[u, v, key]["relation"], v, key)

    def out_edges(self, entity: str, relation: str | None = None) -> list[Edge]:
        """Edges leaving `entity` (with `relation` when given), newest fact first."""
        if entity not in self.graph:
            return []
        found = [
            Edge(entity, data["relation"], v, k)
            for _, v, k, data in self.graph.out_edges(entity, keys=True, data=True)
            if relation is None or data["relation"] == relation
        ]
        return sorted(found, key=lambda e: -e.key)

    def chain(self, entity: str, relations: Sequence[str]) -> list[Edge]:
        """Follow `relations` in order from `entity`; stops early where an edge is missing.

        Where a relation has several objects, the newest fact (highest key) is followed.
        """
        if isinstance(relations, str):
            raise GraphInputError("relations must be a list of relation ids, not one string")
        walk: list[Edge] = []
        here = entity
        for relation in relations:
            edges = self.out_edges(here, relation)
            if not edges:
                break
            walk.append(edges[0])
            here = edges[0].object
        return walk

    def neighbourhood(self, entity: str, hops: int = 1) -> list[Edge]:
        """Edges among entities within `hops` steps of `entity`, in either direction."""
        if hops < 0:
            raise GraphInputError("hops must be >= 0")
        if entity not in self.graph:
            return []
        near = nx.single_source_shortest_path_length(
            self.graph.to_undirected(as_view=True), entity, cutoff=hops
        )
        sub = self.graph.subgraph(near)
        edges = [Edge(u, d["relation"], v, k) for u, v, k, d in sub.edges(keys=True, data=True)]
        return sorted(edges, key=lambda e: (near[e.subject] + near[e.object], e.key))

    def path(self, a: str, b: str) -> list[Edge] | None:
        """The shortest chain of facts linking `a` and `b` (edges may point either way); None if none."""
        if a not in self.graph or b not in self.graph:
            return None
        try:
            nodes = nx.shortest_path(self.graph.to_undirected(as_view=True), a, b)
        except nx.NetworkXNoPath:
            return None
        walk = []
        for u, v in zip(nodes, nodes[1:]):
            if self.graph.has_edge(u, v):
                walk.append(self._edge(u, v, max(self.graph[u][v])))
            else:
                walk.append(self._edge(v, u, max(self.graph[v][u])))
        return walk
