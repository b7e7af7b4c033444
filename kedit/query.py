"""The query loop: gather evidence from every source, resolve conflicts by preference, answer.

1. Instructions: sentences that state a known relation bind hops at the top tier; the text itself is
   kept as evidence.
2. The evidence pool (RFM-RAG) extracts the question's (subject, relation, ?) slots and retrieves over
   rounds from the vectors and the graph.
3. The chain is walked hop by hop from the question's entity. At each hop the candidates are: an
   instruction statement, the stored facts valid at `as_of` (newest first), a retrieved passage about
   the subject (read by the model), and the model's own cloze answer; `preference.resolve` picks one and
   its answer becomes the next hop's subject (edited facts therefore override the chain).
4. The model generates the answer from the winning evidence only; `Answer.trace` says which tier won
   and why, hop by hop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kedit.errors import KeditError
from kedit.preference import Evidence, Tier, resolve
from kedit.statements import parse_statements


@dataclass
class Answer:
    """An answer with its evidence (winning first) and a trace of how it was reached."""

    text: str
    answer: str | None
    evidence: list[Evidence]
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "answer": self.answer, "evidence": [e.to_dict() for e in self.evidence],
                "trace": self.trace}


def _norm(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def _fact_evidence(fact, relations, score: float = 1.0) -> Evidence:
    return Evidence(
        Tier.STORED, fact.sentence, fact.object, source=fact.source, fact_id=fact.id, score=score,
        timestamp=fact.start or "", meta={"subject": fact.subject, "relation": fact.relation,
                                          "relation_label": relations.resolve(fact.relation).label},
    )


def _hop_candidates(layer, subject: str, relation_id: str, instructed: dict, as_of, passages) -> list[Evidence]:
    store, relations = layer.store, layer.store.relations
    relation = relations.resolve(relation_id)
    candidates: list[Evidence] = []
    said = instructed.get((_norm(subject), relation_id))
    if said is not None:
        candidates.append(Evidence(Tier.INSTRUCTION, said.text, said.object, source="instruction"))
    entity = store.link_entity(subject) or subject
    for fact in store.facts(subject=entity, relation=relation_id, as_of=as_of, include_superseded=False):
        candidates.append(_fact_evidence(fact, relations))
    if any(c.tier <= Tier.STORED for c in candidates):
        return candidates  # a higher tier already answers this hop: skip the model's reading work
    cloze = relation.cloze.format(subject)
    about = [p for p in passages if _norm(subject) in _norm(p.text)]
    if about:
        read = layer._greedy_answer(f"{about[0].text}\n{cloze}")
        if read:
            candidates.append(Evidence(Tier.PASSAGE, about[0].text, read, source=about[0].source,
                                       passage_id=about[0].id, score=about[0].score))
    own = layer._greedy_answer(cloze)
    if own:
        candidates.append(Evidence(Tier.PARAMETRIC, f"{cloze} {own}", own, source="model"))
    return candidates


def _generate(layer, question: str, evidence: list[Evidence], max_new_tokens: int) -> str:
    facts = "\n".join(f"- {e.text}" for e in evidence if e.tier < Tier.PARAMETRIC)
    prompt = (f"Answer the question using only these facts.\nFacts:\n{facts}\nQuestion: {question}\nAnswer:"
              if facts else f"Question: {question}\nAnswer:")
    return layer.bundle.complete(prompt, max_new_tokens=max_new_tokens).strip().split("\n")[0].strip()


def answer_question(layer, question: str, *, instructions: str | None = None, as_of: Any = None, k: int = 5,
                    max_new_tokens: int = 12) -> Answer:
    from kedit.store.evidence import EvidencePool

    if not isinstance(question, str) or not question.strip():
        raise KeditError("query needs a non-empty question")
    t0 = time.perf_counter()
    relations = layer.store.relations
    statements = parse_statements(instructions, relations) if instructions else []
    instructed = {(_norm(s.subject), s.relation): s for s in statements}

    pool = EvidencePool(layer.store, k=k).run(question)
    passages = [e for e in pool.evidence if e.kind == "passage"]
    if as_of is not None:
        passages = [p for p in layer.store.search(question, k=k, as_of=as_of, kinds=("passage",))]

    hops, chain_evidence, entity = [], [], None
    if pool.slots and pool.slots[0].subject is not None:
        entity = pool.slots[0].subject
        for slot in pool.slots:
            candidates = _hop_candidates(layer, entity, slot.relation, instructed, as_of, passages)
            res = resolve(candidates)
            hops.append({
                "subject": entity, "relation": slot.relation, "relation_label": relations.resolve(slot.relation).label,
                "answer": res.winner.answer if res.winner else None,
                "tier": res.winner.tier.name.lower() if res.winner else None, "why": res.why, "conflict": res.conflict,
                "candidates": [c.to_dict() for c in res.ranked],
            })
            if res.winner is None:
                entity = None
                break
            chain_evidence.append(res.winner)
            entity = res.winner.answer

    trace: dict[str, Any] = {
        "question": question, "as_of": as_of, "instructions": instructions,
        "instruction_statements": [s.__dict__ for s in statements],
        "pool": {"session_id": pool.session_id, "complete": pool.complete,
                 "slots": [s.__dict__ for s in pool.slots],
                 "rounds": [{"round": r.round, "queries": r.queries, "new_evidence": r.new_evidence}
                            for r in pool.rounds]},
        "hops": hops,
    }
    if hops and entity is not None:
        answer = entity
        weakest = max(chain_evidence, key=lambda e: e.tier)
        trace["mode"] = "chain"
        trace["winner"] = {"tier": weakest.tier.name.lower(), "label": weakest.tier.label,
                           "why": "; ".join(h["why"] for h in hops)}
        winning = chain_evidence
    else:
        # no chain: rank the retrieved facts and passages and answer from the best tier present
        retrieved = [
            _fact_evidence(e.fact, relations, e.score) if e.fact is not None
            else Evidence(Tier.PASSAGE, e.text, None, source=e.source, passage_id=e.id, score=e.score)
            for e in pool.evidence if e.score >= 0.3
        ][:k]
        if instructions:
            retrieved.insert(0, Evidence(Tier.INSTRUCTION, instructions, None, source="instruction"))
        winning = sorted(retrieved, key=lambda e: (e.tier, -e.score))
        top = winning[0].tier if winning else Tier.PARAMETRIC
        winning = [e for e in winning if e.tier == top]
        answer = None
        trace["mode"] = "retrieval" if winning else "closed-book"
        trace["winner"] = {"tier": top.name.lower(), "label": top.label,
                           "why": f"the highest tier with evidence is {top.label}" if winning
                           else "no evidence found: the model answers from its own memory"}
    generated = _generate(layer, question, winning, max_new_tokens)
    trace["generated"] = generated
    if answer is not None and _norm(answer) not in _norm(generated):
        trace["note"] = "the model's generation did not state the resolved answer; the evidence's answer is given"
        text = answer
    else:
        text = answer if answer is not None else generated
    if answer is None and winning == []:
        winning = [Evidence(Tier.PARAMETRIC, generated, generated, source="model")]
    trace["seconds"] = round(time.perf_counter() - t0, 3)
    return Answer(text=text, answer=answer if answer is not None else (generated or None), evidence=winning,
                  trace=trace)
