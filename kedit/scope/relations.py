"""The open relation vocabulary: an edit whose wording matches no known relation defines one.

A prompt template is read as a known relation when a relation's template matches it word for word;
else it joins the relation whose bank (templates of that relation seen so far) holds a template within
`join_similarity` (MiniLM cosine of the masked templates); else it becomes a new *learned* relation with
the template as its cloze and question. A learned relation is a relation like any other: facts of it
supersede each other, parse instructions, form graph edges and chains, and are exported.

>>> learned_relation("{}, who is employed by").id.startswith("L")
True
>>> learned_relation("{}, who is employed by").cloze
'{}, who is employed by'
"""

from __future__ import annotations

import hashlib

from kedit.scope.text import masked_template
from kedit.statements import match_relation
from memory import Relation

LEARNED = "learned"


def learned_relation(template: str) -> Relation:
    """The relation a template defines (same template, same id: learning it twice is a no-op)."""
    shape = masked_template(template)
    digest = hashlib.sha1(shape.casefold().encode("utf-8")).hexdigest()[:10]
    return Relation(
        f"L{digest}",
        shape,
        cloze=template.strip(),
        question=template.strip(),
        functional=True,
        source=LEARNED,
    )


def relation_for_template(store, template: str, scope, join_similarity: float) -> tuple[str, str]:
    """(relation id, how) for an edit's prompt template: "template" (a known template matches it),
    "joined" (a relation's bank holds a template this close) or "learned" (registered now)."""
    lexical = match_relation(template, store.relations)
    if lexical is not None:
        return lexical, "template"
    similarities = scope.similarities(masked_template(template))
    if similarities:
        best = max(similarities, key=similarities.__getitem__)
        if similarities[best] >= join_similarity:
            return best, "joined"
    relation = learned_relation(template)
    if relation.id not in store.relations:
        store.register_relation(
            relation.id,
            relation.label,
            cloze=relation.cloze,
            question=relation.question,
            functional=True,
            source=LEARNED,
        )
    return relation.id, "learned"
