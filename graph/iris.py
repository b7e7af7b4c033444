"""IRIs for entities, relations and sources. Names are percent-encoded, so no character in a name can
break out of an IRI in SPARQL, N-Triples or Turtle; decoding gives the name back exactly.

>>> entity_iri('Bob "> ; DROP')
rdflib.term.URIRef('urn:kedit:entity:Bob%20%22%3E%20%3B%20DROP')
>>> entity_name(entity_iri('Bob "> ; DROP'))
'Bob "> ; DROP'
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from rdflib import URIRef

from graph.errors import GraphInputError

ENTITY = "urn:kedit:entity:"
RELATION = "urn:kedit:relation:"
SOURCE = "urn:kedit:source:"
_RELATION_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GraphInputError(f"{what} must be non-empty text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise GraphInputError(f"{what} is not valid Unicode text") from None
    return value


def entity_iri(name: str) -> URIRef:
    return URIRef(ENTITY + quote(_name(name, "entity name"), safe=""))


def relation_iri(relation_id: str) -> URIRef:
    if not isinstance(relation_id, str) or not _RELATION_ID.match(relation_id):
        raise GraphInputError(f"relation id {relation_id!r} must be a letter then letters/digits/_")
    return URIRef(RELATION + relation_id)


def source_iri(source: str) -> URIRef:
    return URIRef(SOURCE + quote(_name(source, "source"), safe=""))


def _strip(iri: str, prefix: str, what: str) -> str:
    if not str(iri).startswith(prefix):
        raise GraphInputError(f"{str(iri)[:80]!r} is not a kedit {what} IRI")
    return unquote(str(iri)[len(prefix) :])


def entity_name(iri: str) -> str:
    return _strip(iri, ENTITY, "entity")


def relation_id(iri: str) -> str:
    return _strip(iri, RELATION, "relation")


def source_name(iri: str) -> str:
    return _strip(iri, SOURCE, "source")
