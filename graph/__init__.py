"""graph: facts as RDF (rdflib over Oxigraph, one named graph per source), a networkx view for multi-hop
walks, and entity linking.

>>> from graph import MultiHopGraph
>>> view = MultiHopGraph(); view.add("A", "P1", "B", key=1)
>>> view.path("B", "A")[0].relation
'P1'
"""

from graph.entity_linker import EntityLinker, normalise
from graph.errors import GraphError, GraphInputError, GraphStoreError
from graph.iris import entity_iri, entity_name, relation_id, relation_iri, source_iri, source_name
from graph.multihop import Edge, MultiHopGraph
from graph.triple_store import TripleStore, read_stamp, read_triples, write_stamp

__all__ = [
    "Edge",
    "EntityLinker",
    "GraphError",
    "GraphInputError",
    "GraphStoreError",
    "MultiHopGraph",
    "TripleStore",
    "entity_iri",
    "entity_name",
    "normalise",
    "read_stamp",
    "read_triples",
    "relation_id",
    "relation_iri",
    "source_iri",
    "source_name",
    "write_stamp",
]
