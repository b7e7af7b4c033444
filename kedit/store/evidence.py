"""A dynamic evidence pool (RFM-RAG, docs/methods.md §6): retrieval as a loop over a persistent pool.

1. Extract the question's (subject, relation, ?) slots: a relation's question/cloze template matched
   whole, else the entity named in the question plus relation cues (labels, aliases) ordered outward
   from the entity; a multi-hop chain binds one slot's object as the next slot's subject.
2. Each round, for every open slot whose subject is known, form a refined query (round 1: the question
   and the relation's question template; later: its cloze template and the pool's entities), retrieve
   from the vector index and the graph (the fact in force), and add new evidence to the pool (dedup).
3. Stop when every slot is bound by evidence (cosine >= tau for vector hits) - complete - or when a
   round adds nothing new, or after `max_rounds`. The session (slots, rounds) is saved in the record.

>>> pool = EvidencePool(store)                                                   # doctest: +SKIP
>>> result = pool.run("Who is the head of state of the country Ellie Kemper is a citizen of?")  # doctest: +SKIP
>>> result.complete, result.answer                                               # doctest: +SKIP
(True, 'Kolinda Grabar-Kitarović')
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

from graph import normalise
from kedit.statements import nearest_relations
from kedit.store.hit import Hit
from kedit.store.knowledge_store import KnowledgeStore
from memory import EvidenceRound, Relation


@dataclass(frozen=True)
class Slot:
    """(subject, relation, ?) - `object` and `fact_id` are filled when evidence binds the slot."""

    position: int
    relation: str
    subject: str | None = None
    object: str | None = None
    fact_id: int | None = None
    score: float = 0.0

    @property
    def bound(self) -> bool:
        return self.object is not None


@dataclass(frozen=True)
class EvidenceResult:
    question: str
    slots: list[Slot]
    rounds: list[EvidenceRound]
    evidence: list[Hit]
    complete: bool
    session_id: int | None

    @property
    def answer(self) -> str | None:
        """The last slot's object when every slot is bound."""
        return self.slots[-1].object if self.complete and self.slots else None


@lru_cache(maxsize=16384)  # re's own cache holds 512: a store's learned relations would overflow it
def _template_regex(template: str) -> re.Pattern[str]:
    head, tail = template.split("{}")
    tail = tail.rstrip(" ?.")
    return re.compile(rf"^\s*{re.escape(head)}(?P<subject>.+?){re.escape(tail)}\s*[?.]?\s*$", re.IGNORECASE)


@lru_cache(maxsize=16384)
def _phrase_regex(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(phrase)}\b")


def _session_row(hit: Hit) -> dict:
    """What a saved session keeps of a piece of evidence: ids, text, score and how it was found (not the rows,
    nor a fact's asserted object, which its id names)."""
    return {k: v for k, v in asdict(hit).items() if k not in ("passage", "answer")} | {"fact": None}


class EvidencePool:
    def __init__(
        self,
        store: KnowledgeStore,
        *,
        k: int = 5,
        max_rounds: int = 3,
        tau: float = 0.5,
        persist: bool = True,
    ) -> None:
        self.store = store
        self.k = k
        self.max_rounds = max_rounds
        self.tau = tau
        self.persist = persist and not store.read_only
        self._templates = [
            (relation, _template_regex(template))
            for relation in store.relations
            for template in (relation.question, relation.cloze)
        ]

    # -- slot extraction ------------------------------------------------------------------------
    def _entity(self, text: str) -> str:
        return self.store.link_entity(text) or text.strip()

    def extract_slots(self, question: str) -> list[Slot]:
        """The question's slots, in the order a chain binds them."""
        for relation, pattern in self._templates:
            match = pattern.match(question)
            if match:
                names = self.store.linker.candidates(match.group("subject"))
                if names:
                    return [Slot(0, relation.id, names[0])]
        mentions = self.store.linker.mentions(question)
        folded = question.casefold()
        anchor = folded.find(normalise(mentions[0])) if mentions else 0
        cues = self._relation_cues(folded)
        if not cues:
            relation = self._closest_relation(question)
            return [Slot(0, relation.id, mentions[0] if mentions else None)]
        cues.sort(key=lambda cue: abs(cue[0] - anchor))
        slots = [Slot(0, cues[0][1], mentions[0] if mentions else None)]
        slots += [Slot(i, relation) for i, (_, relation) in enumerate(cues[1:], start=1)]
        return slots

    def _relation_cues(self, folded: str) -> list[tuple[int, str]]:
        """(position, relation id) of relation aliases (cue phrases) in the question, longest first."""
        spans: list[tuple[int, int, str]] = []
        for relation in self.store.relations:
            for phrase in {a.casefold() for a in relation.aliases}:
                for match in _phrase_regex(phrase).finditer(folded):
                    spans.append((match.start(), match.end(), relation.id))
        spans.sort(key=lambda s: -(s[1] - s[0]))
        taken: list[tuple[int, int]] = []
        found: dict[str, int] = {}
        for start, end, relation_id in spans:
            if any(start < e and s < end for s, e in taken) or relation_id in found:
                continue
            taken.append((start, end))
            found[relation_id] = start
        return [(position, relation_id) for relation_id, position in found.items()]

    def _closest_relation(self, question: str) -> Relation:
        """The relation whose templates are nearest the question (names masked; template vectors cached)."""
        relation_id, _ = nearest_relations([question], self.store.relations, self.store.embedder)[0]
        return self.store.relations.resolve(relation_id)

    # -- the loop -------------------------------------------------------------------------------
    def _bind(self, slot: Slot, evidence: list[Hit]) -> Slot:
        subject = normalise(slot.subject or "")
        best = None
        for item in evidence:
            fact = item.fact
            if fact is None or fact.relation != slot.relation or item.score < self.tau:
                continue
            if normalise(fact.subject) != subject and normalise(self._entity(fact.subject)) != subject:
                continue
            if best is None or (item.via == "graph", item.score) > (best.via == "graph", best.score):
                best = item
        if best is None or best.fact is None:
            return slot
        return replace(slot, object=best.fact.object, fact_id=best.fact.id, score=best.score)

    def _retrieve(self, slot: Slot, query: str, round_number: int) -> list[Hit]:
        assert slot.subject is not None
        found: list[Hit] = []
        fact = self.store.current(self._entity(slot.subject), slot.relation)
        if fact is not None:
            found.append(Hit.of_fact(fact, via="graph", round=round_number))
        for hit in self.store.search(query, k=self.k):
            found.append(replace(hit, round=round_number))
        return found

    def _query(self, slot: Slot, question: str, round_number: int, pool: dict) -> str:
        relation = self.store.relations.resolve(slot.relation)
        assert slot.subject is not None
        if round_number == 1:
            return relation.ask(slot.subject)
        if round_number == 2:
            return relation.cloze.format(slot.subject)
        known = [e.fact.object for e in pool.values() if e.fact is not None][:3]
        return f"{relation.label} of {slot.subject} ({', '.join(known)})" if known else question

    def run(self, question: str) -> EvidenceResult:
        slots = self.extract_slots(question)
        pool: dict[tuple[str, int | None], Hit] = {}
        rounds: list[EvidenceRound] = []
        for round_number in range(1, self.max_rounds + 1):
            queries, new, bound_now = [], 0, []
            if round_number == 1:
                queries.append(question)
                for hit in self.store.search(question, k=self.k):
                    item = replace(hit, round=round_number)
                    new += pool.setdefault((item.kind, item.id), item) is item
            for index, slot in enumerate(slots):
                if slot.bound:
                    continue
                if slot.subject is None:
                    break
                query = self._query(slot, question, round_number, pool)
                queries.append(query)
                for item in self._retrieve(slot, query, round_number):
                    key = (item.kind, item.id)
                    if key not in pool or (item.via == "graph" and pool[key].via != "graph"):
                        new += key not in pool
                        pool[key] = item
                slots[index] = slot = self._bind(slot, list(pool.values()))
                if not slot.bound:
                    slot = self._reorder(slots, index, list(pool.values()))
                if not slot.bound:
                    break
                bound_now.append(asdict(slot))
                if index + 1 < len(slots):
                    slots[index + 1] = replace(slots[index + 1], subject=slot.object)
            rounds.append(
                EvidenceRound(
                    round=round_number,
                    queries=queries,
                    hits=[_session_row(e) for e in pool.values() if e.round == round_number],
                    bound=bound_now,
                    new_evidence=new,
                )
            )
            if all(s.bound for s in slots) or new == 0:
                break
        complete = bool(slots) and all(s.bound for s in slots)
        session_id = None
        if self.persist:
            session = self.store.record.save_session(question, [asdict(s) for s in slots], complete, rounds)
            session_id = session.id
        evidence = sorted(pool.values(), key=lambda e: (-(e.via == "graph"), -e.score))
        return EvidenceResult(question, slots, rounds, evidence, complete, session_id)

    def _reorder(self, slots: list[Slot], index: int, evidence: list[Hit]) -> Slot:
        """When slot `index` cannot bind, try a later slot's relation from the same subject instead."""
        slot = slots[index]
        for later in range(index + 1, len(slots)):
            fact = self.store.current(self._entity(slot.subject or ""), slots[later].relation)
            if fact is not None:  # the fact in force wins over older evidence in the pool
                trial = replace(slot, relation=fact.relation, object=fact.object, fact_id=fact.id, score=1.0)
            else:
                trial = self._bind(replace(slot, relation=slots[later].relation), evidence)
                if not trial.bound:
                    continue
            slots[later] = replace(slots[later], relation=slot.relation)
            slots[index] = trial
            return trial
        return self._bridge(slots, index)

    def _bridge(self, slots: list[Slot], index: int) -> Slot:
        """An unstated hop: the question names a relation its entity lacks ("the official language of
        the country Herb Caen belongs to"), so look one hop out in the graph for an entity that has it,
        and insert that hop as a bound slot before this one."""
        slot = slots[index]
        subject = self._entity(slot.subject or "")
        for edge in self.store.view.out_edges(subject):
            if self.store.current(edge.object, slot.relation) is not None:
                bridge = Slot(index, edge.relation, subject, edge.object, edge.key, 1.0)
                slots.insert(index, bridge)
                for later in range(index + 1, len(slots)):
                    slots[later] = replace(slots[later], position=later)
                slots[index + 1] = replace(slots[index + 1], subject=edge.object)
                return bridge
        return slot
