"""How the query loop reads a question before walking: its scope decision, then a chain, its in-scope fact,
the facts walked from it, the facts whose value it names, or the stored country of the place it asks
about (`scope_slots`; `KnowledgeLayer.read_scope` shows the reading).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from kedit.answers import norm_answer as _norm
from kedit.scope.names import subject_in_text
from kedit.scope.relations import asks_from_country, is_country_of_place, reads_inverse
from kedit.scope.text import nests_hops as text_nests_hops
from kedit.store.hit import Hit


@dataclass
class QuestionState:
    """One question's progress through the loop."""

    question: str
    t0: float
    slots: list = field(default_factory=list)
    origin: str = "none"
    passages: list[Hit] = field(default_factory=list)  # passages in scope (the store's search results)
    hops: list = field(default_factory=list)
    chain: list = field(default_factory=list)
    entity: str | None = None
    pool: Any = None
    broken: bool = False
    scope: Any = None  # the question's ScopeDecision
    allowed: set | None = None  # stored facts a one-hop question may use (its in-scope facts)
    walked: list = field(default_factory=list)  # ScopeCandidates a question with nested hops is answered from
    through: list = field(
        default_factory=list
    )  # facts whose object it names (nothing in scope; read, not answered)
    # a question asking what a place takes from its country: the question about the stored country
    # ("The currency in Canada" for "The currency in Lac Otelnuk"), asked closed-book, and that fact
    rewritten: str | None = None
    via: list = field(default_factory=list)


def names_in(question: str, decision) -> list[str]:
    """The names a question is about: its linked mentions, else the name it spells (capitalised run)."""
    names = [m.text for m in decision.mentions] + [e for m in decision.mentions for e in m.entities]
    named = subject_in_text(question)
    if named is not None:
        names.append(named[0])
    return [n for n in dict.fromkeys(names) if n]


def nests_hops(question: str, decision) -> bool:
    """Whether the question reaches what it asks through its linked subject (`kedit.scope.text.nests_hops`
    before the first mention): "Who is the head of state of the country that X is a citizen of?"."""
    if not decision.mentions:
        return False
    first = min(decision.mentions, key=lambda m: m.start)
    return text_nests_hops(question, first.start, first.end)


def names_whole(text: str, value: str) -> bool:
    """Whether `text` names `value` as whole words (case and spacing aside)."""
    value = _norm(value)
    return bool(value) and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", _norm(text)) is not None


def _prompt_of(fact) -> str | None:
    """The prompt a fact was written from, its subject masked (a name is no relation word)."""
    prompt = (fact.provenance or {}).get("prompt")
    return prompt.replace(fact.subject, "{}") if prompt else None


def _outside_mentions(text: str, decision) -> str:
    """`text` with its linked subjects blanked out ("Bali myna" does not name the value "myna")."""
    for m in sorted(decision.mentions, key=lambda m: -m.start):
        text = text[: m.start] + " " + text[m.end :]
    return text


def scope_slots(state: QuestionState, pool, question: str, walk=None, named_objects=None) -> None:
    """A question's chain: a multi-hop chain as the relation cues give it; a one-hop question is about
    its in-scope stored fact (the scope decision), and may use no other stored fact. A question that nests
    hops the cues do not give (`nests_hops`) has no chain: it is answered from the stored facts `walk`
    (the scope model's walk) reaches from its in-scope facts, each in scope of its wording, and no others.
    A question with no fact in scope that names a stored value (`named_objects`: "Who is the son of
    Gabrielle Bordaberry?") has no chain either: the model reads the facts that hold that value. One
    asking what a place takes from its country, the place's country stored, is asked of that country
    (`rewritten`, origin "from country")."""
    state.slots, state.origin = pool.chain_slots(question)
    if len(state.slots) > 1:
        return
    fact = state.scope.fact
    if fact is None and named_objects is not None:
        # a question asking a relation of the value itself ("What is the capital of Croatia?") does not
        # read through a fact holding it; its inverse ("Who is the son of X?" for "The father of Y is X") does
        named = state.slots and state.slots[0].subject and pool.names_relation(question)
        asked = state.slots[0].relation if named else None
        state.through = [
            c
            for c in named_objects(question)
            if reads_inverse(asked, pool.store.relations.resolve(c.fact.relation), _prompt_of(c.fact))
        ]
        if state.through:
            state.allowed = {c.fact.id for c in state.through}
            state.slots, state.origin = [], "named object"
            return
    if fact is None and state.scope.mentions:
        # "The name of the currency in X is" with X's country C stored: asked of C, closed-book
        masked_question = _outside_mentions(question, state.scope)
        via = [
            c
            for c in state.scope.candidates
            if is_country_of_place(pool.store.relations.resolve(c.fact.relation), _prompt_of(c.fact))
        ]
        mention = next((m for m in state.scope.mentions if via and via[0].fact.subject in m.entities), None)
        if mention is not None and asks_from_country(masked_question):
            state.rewritten = question[: mention.start] + via[0].fact.object + question[mention.end :]
            state.via = via[:1]
            state.slots, state.origin = [], "from country"
            return
    state.allowed = {c.fact.id for c in state.scope.in_scope}
    # a question that already names its in-scope fact's value asks through it ("In which tier did X
    # compete after joining the USL First Division?"): that value is no answer, the model reads the fact
    names_value = fact is not None and names_whole(_outside_mentions(question, state.scope), fact.object)
    if fact is not None and walk is not None and (names_value or nests_hops(question, state.scope)):
        state.walked = walk(state.scope)
        state.allowed = {c.fact.id for c in state.walked}
        state.slots, state.origin = [], "walk"
        return
    if fact is not None:
        from kedit.store.evidence import Slot

        state.slots, state.origin = [Slot(0, fact.relation, fact.subject)], "scope"


def read_scope(layer, question: str, pool, as_of: Any = None) -> QuestionState:
    """A question as the query loop reads it before walking: its scope decision and what `scope_slots`
    makes of it (a chain, its in-scope fact, the facts walked from it, or the facts whose value it names)."""
    state = QuestionState(question, time.perf_counter())
    state.scope = layer.scope.decide(question, as_of=as_of)
    scope_slots(
        state,
        pool,
        question,
        walk=lambda decision: layer.scope.walk(decision, as_of=as_of),
        named_objects=lambda text: layer.scope.named_objects(text, as_of=as_of),
    )
    return state
