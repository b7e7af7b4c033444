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
import re

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


# What a question asked about a stored value reads through: the words of a stored fact's relation that
# make it the inverse of the relation the question asks (Wikidata: child P40 is the inverse of father P22
# and mother P25; spouse P26 and sibling P3373 are their own). Hand-written: Wikidata's inverse-property
# statements (P1696) are not shipped, and only relations whose inverse is a person are asked this way
# (on ZsRE dev 56 of the 58 portability questions that name the new value ask child or spouse). A
# question asking any other relation of the value ("What is the capital of Croatia?" with "X is a
# citizen of Croatia" stored) asks about the value itself, not through the fact.
INVERSE_WORDS: dict[str, frozenset[str]] = {
    "P40": frozenset({"father", "mother", "parent"}),
    "P26": frozenset({"spouse", "wife", "husband", "married", "marry", "partner"}),
    "P3373": frozenset({"sibling", "brother", "sister"}),
}


def reads_inverse(asked: str | None, fact_relation: Relation, fact_prompt: str | None = None) -> bool:
    """Whether a question asking relation `asked` about a stored value reads the stored fact (of
    `fact_relation`, written from `fact_prompt`) holding that value: when no relation is read from the
    question, the question asks the fact's own relation of the value (a symmetric reading: "Who is the
    spouse of X?" for "Y's spouse is X"), or the fact's relation words name the asked relation's inverse
    ("fathered" names father).

    >>> from memory import Relation
    >>> father = Relation("L1", "father", cloze="The father of {} is", question="Who is the father of {}?")
    >>> reads_inverse("P40", father), reads_inverse("P36", father), reads_inverse(None, father)
    (True, False, True)
    >>> fathered = Relation("L2", "fathered", cloze="{} was fathered by", question="Who fathered {}?")
    >>> reads_inverse("P40", fathered), reads_inverse("L2", fathered)
    (True, True)
    """
    if asked is None or asked == fact_relation.id:
        return True
    words = INVERSE_WORDS.get(asked)
    if not words:
        return False
    text = " ".join([fact_relation.label, fact_relation.cloze, fact_relation.question, fact_prompt or ""])
    return any(t.startswith(w) for t in re.findall(r"[a-z]+", text.casefold()) for w in words)


# What a place takes from its country: its continent (Wikidata P30), currency (P38), official language
# (P37) and anthem (P85) are, unless stated otherwise, those of its country (P17). A question asking one of
# them about a stored subject whose country is stored, and no stored fact of it, reads the country fact:
# "The name of the currency in Lac Otelnuk is" once "Lac Otelnuk is in Canada" is stored. Head of state and
# of government are not among them: a town has its own mayor. Hand-written (no property-chain axioms are
# shipped); the four are the ones asked of a place by KnowEdit's WikiData sets, where they were read.
FROM_COUNTRY = re.compile(r"\b(continent|currency|official languages?|anthem)\b", re.IGNORECASE)
_COUNTRY = re.compile(r"\bcountry\b", re.IGNORECASE)
_NOT_A_PLACES_COUNTRY = re.compile(r"\b(citizen\w*|origin|born|birth|nationality)\b", re.IGNORECASE)


def is_country_of_place(relation: Relation, fact_prompt: str | None = None) -> bool:
    """Whether facts of `relation` give the country a place is in (Wikidata P17, or a relation written
    as one: "The name of the country which {} is associated with is"), not a person's citizenship or a
    work's country of origin.

    >>> from memory import Relation
    >>> place = "The name of the country which {} is associated with is"
    >>> citizen = "What is the country of citizenship of {}?"
    >>> is_country_of_place(Relation("L1", "x", cloze=place, question=place)), is_country_of_place(
    ...     Relation("L2", "x", cloze=citizen, question=citizen))
    (True, False)
    """
    if relation.id == "P17":
        return True
    text = " ".join([relation.label, relation.cloze, relation.question, fact_prompt or ""])
    return (
        relation.id.startswith("L") and bool(_COUNTRY.search(text)) and not _NOT_A_PLACES_COUNTRY.search(text)
    )


def asks_from_country(masked_question: str) -> bool:
    """Whether a question (its subject masked) asks what a place takes from its country.

    >>> asks_from_country("The name of the currency in {} is"), asks_from_country("The capital of {} is")
    (True, False)
    """
    return bool(FROM_COUNTRY.search(masked_question))
