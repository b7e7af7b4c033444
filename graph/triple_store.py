"""Facts as RDF triples in rdflib over a persistent Oxigraph store (via oxrdflib), one named graph per
source. Queries bind values through `initBindings`, never by splicing text into SPARQL.

>>> store = TripleStore.open()                      # in memory; pass a directory to persist
>>> store.add([("Ellie Kemper", "P27", "Croatia", "user")])
>>> store.objects("Ellie Kemper", "P27")
['Croatia']
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pyoxigraph as ox
from oxrdflib import OxigraphStore
from rdflib import RDFS, Dataset, Graph, Literal, URIRef
from rdflib.term import Identifier

from graph.errors import GraphInputError, GraphStoreError
from graph.iris import (
    ENTITY,
    RELATION,
    entity_iri,
    entity_name,
    relation_id,
    relation_iri,
    source_iri,
    source_name,
)

Quad = tuple[str, str, str, str]
FORMATS = {
    "nt": "nt",
    "ntriples": "nt",
    "turtle": "turtle",
    "ttl": "turtle",
    "nquads": "nquads",
    "trig": "trig",
}
_OBJECTS = "SELECT ?s ?p ?o WHERE { GRAPH ?g { ?s ?p ?o } }"


def _binding(value: Any) -> Identifier:
    if isinstance(value, Identifier):
        return value
    if isinstance(value, (str, int, float, bool)):
        return Literal(value)
    raise GraphInputError(f"cannot bind a {type(value).__name__} in a SPARQL query")


class TripleStore:
    """An rdflib Dataset backed by Oxigraph: in memory (`path=None`) or in a directory."""

    def __init__(self, dataset: Dataset, path: Path | None, read_only: bool) -> None:
        self.dataset = dataset
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(cls, path: str | Path | None = None, *, read_only: bool = False) -> TripleStore:
        try:
            if path is None:
                inner = ox.Store()
            else:
                path = Path(path)
                inner = ox.Store.read_only(str(path)) if read_only else ox.Store(str(path))
        except OSError as exc:
            raise GraphStoreError(f"cannot open the triple store at {path}: {exc}") from exc
        return cls(Dataset(store=OxigraphStore(store=inner)), None if path is None else Path(path), read_only)

    @property
    def _ox(self) -> ox.Store:
        return cast(Any, self.dataset.store)._inner  # oxrdflib keeps the pyoxigraph store as `_inner`

    def close(self) -> None:
        if not self.read_only:
            self._ox.flush()
        self.dataset.close()

    # -- writes ---------------------------------------------------------------------------------
    def add(self, triples: Iterable[Quad]) -> None:
        """Add (subject, relation id, object, source) statements; adding one twice is a no-op.

        The quads go straight to Oxigraph (the same terms rdflib's `addN` would convert them to, without
        building rdflib terms first: inserting is on the path of every batch of facts)."""
        label = ox.NamedNode(str(RDFS.label))
        graphs: dict[str, ox.NamedNode] = {}
        nodes: dict[str, ox.NamedNode] = {}

        def node(iri: URIRef) -> ox.NamedNode:
            found = nodes.get(iri)
            if found is None:
                found = nodes[iri] = ox.NamedNode(str(iri))
            return found

        quads: list[ox.Quad] = []
        for subject, relation, obj, source in triples:
            graph = graphs.get(source)
            if graph is None:
                graph = graphs[source] = ox.NamedNode(str(source_iri(source)))
            s, o = node(entity_iri(subject)), node(entity_iri(obj))
            quads += (
                ox.Quad(s, node(relation_iri(relation)), o, graph),
                ox.Quad(s, label, ox.Literal(subject), graph),
                ox.Quad(o, label, ox.Literal(obj), graph),
            )
        if quads:
            self._ox.extend(quads)

    def remove(self, subject: str, relation: str, obj: str, source: str) -> None:
        graph = self.dataset.graph(source_iri(source))
        graph.remove((entity_iri(subject), relation_iri(relation), entity_iri(obj)))

    def clear(self) -> None:
        self._ox.clear()

    def __len__(self) -> int:
        """Number of relation statements (labels not counted)."""
        return sum(1 for _ in self.triples())

    # -- reads ----------------------------------------------------------------------------------
    def query(self, sparql: str, bindings: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
        """Run SELECT `sparql` with `bindings` (variable name -> value) substituted safely.

        Values are bound as RDF terms: a str becomes a literal; pass `entity_iri(name)` for an entity.
        Oxigraph substitutes only variables that the SELECT projects, so project every bound variable.
        """
        init = {name: _binding(value) for name, value in (bindings or {}).items()}
        try:
            result = self.dataset.query(sparql, initBindings=init)
        except (SyntaxError, ValueError, OSError) as exc:
            raise GraphInputError(f"SPARQL query failed: {exc}") from exc
        return [{str(k): str(v) for k, v in row.items()} for row in result.bindings]

    def objects(self, subject: str, relation: str) -> list[str]:
        rows = self.query(_OBJECTS, {"s": entity_iri(subject), "p": relation_iri(relation)})
        return sorted({entity_name(r["o"]) for r in rows})

    def triples(self, source: str | None = None) -> Iterator[Quad]:
        """Every (subject, relation id, object, source) statement."""
        graph = None if source is None else ox.NamedNode(str(source_iri(source)))
        for quad in self._ox.quads_for_pattern(None, None, None, graph):
            predicate = quad.predicate.value
            if (
                predicate.startswith(RELATION)
                and isinstance(quad.graph_name, ox.NamedNode)
                and isinstance(quad.subject, ox.NamedNode)
                and isinstance(quad.object, ox.NamedNode)
            ):
                yield (
                    entity_name(quad.subject.value),
                    relation_id(predicate),
                    entity_name(quad.object.value),
                    source_name(quad.graph_name.value),
                )

    def sources(self) -> list[str]:
        return sorted(source_name(g.value) for g in self._ox.named_graphs() if isinstance(g, ox.NamedNode))

    # -- files ----------------------------------------------------------------------------------
    def export(self, path: str | Path, format: str = "nt") -> Path:
        """Write the statements: `nt`/`turtle` as one graph, `nquads`/`trig` keep the source graphs."""
        fmt = FORMATS.get(format.lower())
        if fmt is None:
            raise GraphInputError(f"unknown RDF format {format!r}; use one of {sorted(FORMATS)}")
        path = Path(path)
        if fmt in ("nquads", "trig"):
            dataset = Dataset()
            for quad in self.dataset.quads((None, None, None, None)):
                dataset.graph(quad[3].identifier if isinstance(quad[3], Graph) else quad[3]).add(quad[:3])
            out: Graph = dataset
        else:
            out = Graph()
            for s, p, o, _ in self.dataset.quads((None, None, None, None)):
                out.add((s, p, o))
        out.bind("entity", ENTITY)
        out.bind("rel", RELATION)
        out.serialize(destination=str(path), format=fmt, encoding="utf-8")
        return path


def read_triples(path: str | Path, format: str | None = None, source: str = "import") -> list[Quad]:
    """Parse an N-Triples/Turtle/N-Quads/TriG file written by `export` into statements.

    Only kedit entity/relation IRIs are taken; labels are skipped; a malformed file raises GraphInputError.
    """
    path = Path(path)
    fmt = FORMATS.get((format or path.suffix.lstrip(".")).lower())
    if fmt is None:
        raise GraphInputError(f"cannot tell the RDF format of {path.name}; pass format=")
    data = Dataset()
    try:
        data.parse(str(path), format=fmt)
    except Exception as exc:  # rdflib raises many parser-specific types
        raise GraphInputError(f"{path.name} is not valid {fmt}: {exc}") from None
    found: list[Quad] = []
    for s, p, o, g in data.quads((None, None, None, None)):
        if not (isinstance(p, URIRef) and str(p).startswith(RELATION)):
            continue
        if not (isinstance(s, URIRef) and isinstance(o, URIRef)):
            raise GraphInputError(f"statement {s} {p} {o} does not link two entities")
        graph_id = g.identifier if isinstance(g, Graph) else g
        name = source
        if isinstance(graph_id, URIRef) and str(graph_id).startswith("urn:kedit:source:"):
            name = source_name(graph_id)
        found.append((entity_name(s), relation_id(p), entity_name(o), name))
    return found


def write_stamp(path: str | Path, record_version: int, count: int) -> None:
    """Record which record version the persistent graph was synchronised to."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"record_version": record_version, "count": count}), encoding="utf-8")
    os.replace(tmp, path)


def read_stamp(path: str | Path) -> dict[str, int] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {"record_version": int(data["record_version"]), "count": int(data["count"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
