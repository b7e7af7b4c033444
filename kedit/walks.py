"""Chain walking for the query loop: a question's chain of (subject, relation, ?) hops, walked hop by hop.

A question's slots come from the evidence pool's slot extraction (relation templates, relation cue phrases
ordered outward from the entity); a one-hop question is about its in-scope stored fact (the scope
decision). When the store does not know the entity, the one the question names (a whole relation
template's subject, else its longest capitalised name) starts the chain anyway: its hops are answered by
the model, closed-book. At each hop the candidates are an instruction statement, the stored facts valid
at `as_of` (newest first), a passage about the subject (read by the model) and the model's closed-book
answer; `preference.resolve` picks one and its answer becomes the next hop's subject.
"""

from __future__ import annotations

import weakref
from typing import Any, cast

from kedit.answers import norm_answer as _norm
from kedit.answers import read_answer, short_answer
from kedit.errors import StoreError
from kedit.preference import Tier, resolve
from kedit.readings import QuestionState
from kedit.runtime.copying import Span
from kedit.runtime.generation import complete_many
from kedit.scope.names import looks_like_name, subject_in_text
from kedit.statements import parse_statements
from kedit.store.hit import Hit

_CHAIN_TOKENS = 6  # closed-book cloze answer of one hop (a short entity name)
_LINE_TOKENS = 12  # closed-book answer line of a few-shot relation question


# store -> (number of relations, their question vectors): kept across questions (a pool lives for one
# call, and `pool_class` makes its class anew each time, so a class attribute would not outlive either)
_RELATION_VECTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pool_class():
    from kedit.store.evidence import EvidencePool, Slot

    class Pool(EvidencePool):
        """The evidence pool with two additions for the query loop: the relation templates' vectors are
        embedded once per store (not per question), and a chain can start from an entity the store does
        not know (named in the question; its first hop is then answered by the model, closed-book)."""

        def _closest_relation(self, question: str):
            relations = list(self.store.relations)
            cached = _RELATION_VECTORS.get(self.store)
            if cached is None or cached[0] != len(relations):
                cached = (len(relations), self.store._embed([r.question.format("X") for r in relations]))
                _RELATION_VECTORS[self.store] = cached
            scores = cached[1] @ self.store._embed([question])[0]
            return relations[int(scores.argmax())]

        def names_relation(self, question: str) -> bool:
            """Whether a question names a relation: a relation template it matches whole, or a relation
            cue. Where it names none, the slot's relation is `_closest_relation`'s guess by similarity,
            not what it asks ("29668 Ipf is followed by" may read "X follows 29668 Ipf" through its value)."""
            return any(pattern.match(question) for _, pattern in self._templates) or bool(
                self._relation_cues(question.casefold())
            )

        def chain_slots(self, question: str) -> tuple[list, str]:
            """The question's slots and where the first subject came from ("store", "text" or "none")."""
            slots = self.extract_slots(question)
            if slots and slots[0].subject is not None:
                return slots, "store"
            for relation, pattern in self._templates:  # a whole relation template: its subject slot
                match = pattern.match(question)
                if match and looks_like_name(match.group("subject")):
                    return [Slot(0, relation.id, match.group("subject").strip())], "text"
            named = subject_in_text(question)
            folded = question.casefold()
            cues = self._relation_cues(folded)
            if named is None or not cues:
                return slots, "none"  # no relation named: no chain to walk (retrieval answers)
            name, at = named
            cues = [c for c in cues if not (at <= c[0] < at + len(name))]
            if not cues:
                return slots, "none"
            cues.sort(key=lambda cue: abs(cue[0] - at))
            chain = [Slot(0, cues[0][1], name)] + [Slot(i, r) for i, (_, r) in enumerate(cues[1:], start=1)]
            return chain, "text"

    return Pool


def _closed_book_prompt(relation, subject: str) -> tuple[str, str]:
    """The model's closed-book question for one hop: the relation's few-shot `Q: ... A:` demos and its
    question template when the vocabulary has demos ("line": the answer is the first line), else its
    cloze template ("cloze": the answer is the first clause)."""
    if relation.few_shot:
        return f"{relation.few_shot.rstrip()}\nQ: {relation.ask(subject)} A:", "line"
    return relation.cloze.format(subject), "cloze"


def _stored_candidates(
    layer,
    subject: str,
    relation_id: str,
    instructed: dict,
    as_of,
    linked: dict[str, str],
    allowed: set[int] | None = None,
) -> list[Hit]:
    """Instruction and stored-fact candidates of one hop; `allowed` (the scope decision of a one-hop
    question) limits the stored facts to those the question is in scope of."""
    store = layer.store
    candidates: list[Hit] = []
    said = instructed.get((_norm(subject), relation_id))
    if said is not None:
        candidates.append(Hit.instruction(said.text, said.object))
    if subject not in linked:  # entity linking (names, aliases, then embedding) once per name and call
        try:
            linked[subject] = store.link_entity(subject) or subject
        except StoreError:  # not a usable name (a model's answer may hold a control character)
            linked[subject] = subject
    entity = linked[subject]
    for fact in store.facts(subject=entity, relation=relation_id, as_of=as_of, include_superseded=False):
        if allowed is None or fact.id in allowed:
            candidates.append(Hit.of_fact(fact))
    return candidates


def _reading_prompt(passage: str, cloze: str) -> str:
    """Ask the model to complete the hop's cloze from the passage. "According to the text above" made
    SmolLM2-135M copy a counterfactual passage's answer in 9 of 10 MQuAKE edits, against 5 of 10 for the bare
    passage + cloze (benchmarks/conflicts.py, kind free_passage_vs_model)."""
    lead = "the " + cloze[4:] if cloze.startswith("The ") else cloze
    return f"{passage}\nAccording to the text above, {lead}"


def _passage_statement(
    passages: list[Hit], subject: str, relation_id: str, relations, names=None
) -> Hit | None:
    """Passage evidence for a hop when a passage states it in a relation template's words ("The capital of
    X is Y."): the object is taken as written; a small model reading it would often answer from its prior."""
    for p in passages:
        for st in parse_statements(p.text, relations, names):
            if st.relation == relation_id and _norm(st.subject) == _norm(subject):
                return p.asserting(st.object)
    return None


def _echoes(said: str, subject: str) -> bool:
    """A hop's answer that repeats its own subject whole: "the head of state of Croatia" → "Croatia".
    A piece of the subject may well be the answer ("German East Africa" is in Africa, "Charles XI of
    Sweden" a citizen of Sweden): on the MQuAKE dev run, banning pieces too lost as many chains as it won."""
    return bool(said) and _norm(said) == _norm(subject)


def _ask_again_without_echo(layer, read: dict, asks: list, jobs: list, prefix_cache: dict) -> None:
    """Closed-book answers that echo their hop's subject are asked again with the subject's first token
    banned as the first answer token, so the model's next-best answer is read instead (on the MQuAKE dev
    run of commit c91eb73, 170 closed-book hops of the chains repeated their subject; docs/methods.md §7)."""
    tok = layer.bundle.tokenizer
    again: dict[tuple[str, str], set[int]] = {}
    for job, prompt, form, passage in asks:
        subject = jobs[job][3]
        if passage is None and _echoes(read[(prompt, form)], subject):
            banned = again.setdefault((prompt, form), set())
            for variant in (subject, f" {subject}"):  # the answer's first token, with or without its space
                first = tok(variant, add_special_tokens=False)["input_ids"][:1]
                banned.update(first)
    if not again:
        return
    keys = list(again)
    texts = complete_many(
        layer.bundle,
        [p for p, _ in keys],
        [_LINE_TOKENS if f == "line" else _CHAIN_TOKENS for _, f in keys],
        until="line",
        prefix_cache=prefix_cache,
        banned_first=[again[k] for k in keys],
    )
    for key, text in zip(keys, texts):
        said = short_answer(read_answer(text, key[1])) or ""
        subject = next(jobs[j][3] for j, p, f, _ in asks if (p, f) == key)
        read[key] = "" if _echoes(said, subject) else said


def walk_chains(layer, states: list[QuestionState], instructed: dict, as_of, prefix_cache: dict) -> None:
    """Walk every question's chain hop by hop, all questions in step, so the model's closed-book and
    passage-reading answers of one hop level are generated together (one batched call)."""
    relations = layer.store.relations
    active = [s for s in states if s.slots and s.slots[0].subject is not None]
    linked: dict[str, str] = {}
    for s in active:
        s.entity = s.slots[0].subject
    level = 0
    while active:
        jobs: list[tuple[QuestionState, list[Hit], Any, str]] = []
        asks: list[tuple[int, str, str, Any]] = []  # (job, prompt, form, passage)
        for s in active:
            slot = s.slots[level]
            entity = cast(str, s.entity)  # an active question has one: its subject, then each hop's answer
            relation = relations.resolve(slot.relation)
            candidates = _stored_candidates(
                layer, entity, slot.relation, instructed, as_of, linked, s.allowed if level == 0 else None
            )
            jobs.append((s, candidates, relation, entity))
            if any(c.tier <= Tier.STORED for c in candidates):
                continue  # a higher tier already answers this hop: skip the model's reading work
            about = [p for p in s.passages if _norm(entity) in _norm(p.text)]
            stated = _passage_statement(about, entity, relation.id, relations, layer.store.linker.candidates)
            if stated is not None:  # the passage states this hop in the relation's own words: no reading
                candidates.append(stated)
            elif about:
                asks.append(
                    (
                        len(jobs) - 1,
                        _reading_prompt(about[0].text, relation.cloze.format(entity)),
                        "cloze",
                        about[0],
                    )
                )
            prompt, form = _closed_book_prompt(relation, entity)
            asks.append((len(jobs) - 1, prompt, form, None))
        if asks:
            unique = list(dict.fromkeys((p, f) for _, p, f, _ in asks))
            # a passage is read extractively: the answer is a span of it (kedit/runtime/copying.py)
            read_from = {
                (p, f): Span((passage.text,), not_from=jobs[j][3])
                for j, p, f, passage in asks
                if passage is not None
            }
            texts = complete_many(
                layer.bundle,
                [p for p, _ in unique],
                [_LINE_TOKENS if f == "line" else _CHAIN_TOKENS for _, f in unique],
                until="line",
                prefix_cache=prefix_cache,
                copy_from=[read_from.get(key) for key in unique],
            )
            read = {key: short_answer(read_answer(t, key[1])) for key, t in zip(unique, texts)}
            _ask_again_without_echo(layer, read, asks, jobs, prefix_cache)
            for job, prompt, form, passage in asks:
                said = read[(prompt, form)]
                if not said:
                    continue
                s, candidates, relation, subject = jobs[job]
                if passage is not None:
                    if _norm(said) not in _norm(passage.text) or _norm(said) in _norm(subject):
                        continue  # not read from the passage (the model's prior), or a piece of the subject
                    candidates.append(passage.asserting(said))
                else:
                    shown = prompt.rsplit("\n", 1)[-1] if form == "line" else prompt
                    candidates.append(Hit.model_answer(f"{shown} {said}", said))
        still = []
        for s, candidates, relation, subject in jobs:
            res = resolve(candidates)
            s.hops.append(
                {
                    "subject": subject,
                    "relation": relation.id,
                    "relation_label": relation.label,
                    "answer": res.winner.answer if res.winner else None,
                    "tier": res.winner.tier.name.lower() if res.winner else None,
                    "why": res.why,
                    "conflict": res.conflict,
                    "candidates": [c.to_dict() for c in res.ranked],
                }
            )
            if res.winner is None:
                s.entity, s.broken = None, True
                continue
            s.chain.append(res.winner)
            s.entity = res.winner.answer
            if level + 1 < len(s.slots):
                still.append(s)
        active = still
        level += 1
