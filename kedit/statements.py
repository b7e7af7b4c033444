"""Reading relation statements out of text with the relation vocabulary's cloze templates.

Used for instructions ("Assume the mother tongue of X is Y.") and for recognising which relation an
edit prompt expresses ("The mother tongue of {} is" -> P103).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_LEAD_IN = re.compile(
    r"^(?:assume|suppose|imagine|note|remember|consider|pretend)(?:\s+that)?\s*[,:]?\s*", re.IGNORECASE
)


@dataclass(frozen=True)
class Statement:
    subject: str
    relation: str
    object: str
    text: str


def _template_regex(cloze: str) -> re.Pattern:
    head, tail = (part.strip() for part in cloze.split("{}"))
    # a word-like tail must start after whitespace, so "is" never matches inside "Atlantis"
    glue = r"\s+" if tail[:1].isalnum() else r"\s*"
    pattern = re.escape(head) + r"\s*(?P<subject>.+?)" + (glue + re.escape(tail) if tail else "")
    return re.compile(r"^" + pattern + r"\s+(?P<object>.+?)\s*[.!]?$", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _compiled(cloze: str) -> re.Pattern:
    return _template_regex(cloze)


def parse_statements(text: str, relations) -> list[Statement]:
    """Every (subject, relation, object) statement in `text` that matches a relation's cloze template.

    >>> from memory import RelationVocabulary
    >>> s = parse_statements("Assume that Danielle Darrieux is a citizen of Italy.", RelationVocabulary.builtin())[0]
    >>> s.subject, s.relation, s.object
    ('Danielle Darrieux', 'P27', 'Italy')
    """
    found: list[Statement] = []
    for raw in _SENTENCE_END.split(text or ""):
        sentence = _LEAD_IN.sub("", raw.strip())
        if not sentence:
            continue
        sentence = sentence[0].upper() + sentence[1:]
        best: Statement | None = None
        for rel in relations:
            m = _compiled(rel.cloze).match(sentence)
            # prefer the template that leaves the shortest subject (the most specific match)
            if m and (best is None or len(m["subject"]) < len(best.subject)):
                best = Statement(m["subject"].strip(), rel.id, m["object"].strip(), raw.strip())
        if best is not None:
            found.append(best)
    return found


def _shape(template: str) -> str:
    return " ".join(template.replace("{}", "X").lower().split())


def match_relation(prompt_template: str, relations, embedder=None, threshold: float = 0.8) -> str | None:
    """The id of the relation whose cloze or question template `prompt_template` (with `{}`) expresses.

    Exact template match first; otherwise the most similar cloze template by sentence embedding, if its
    cosine similarity reaches `threshold`.
    """
    shape = _shape(prompt_template)
    rels = list(relations)
    for rel in rels:
        if shape in (_shape(rel.cloze), _shape(rel.question)):
            return rel.id
    if embedder is None or not rels:
        return None
    vecs = embedder.encode([prompt_template.replace("{}", "X")] + [r.cloze.replace("{}", "X") for r in rels])
    sims = vecs[1:] @ vecs[0]
    best = int(np.argmax(sims))
    return rels[best].id if float(sims[best]) >= threshold else None
