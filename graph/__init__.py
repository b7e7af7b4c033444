"""Triple store and multi-hop walks (rdflib, networkx)."""
