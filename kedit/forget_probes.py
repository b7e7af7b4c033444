"""Probes that check a forgotten fact is gone from what the user sees (MUSE-style verification).

For each forgotten (subject, relation, object): the relation's cloze and question forms from the
vocabulary, and the stored paraphrases (the forgotten facts' sentences, the redacted passage sentences,
the prompts of the weight edits that wrote it), each cut just before the object. Every probe is asked
closed-book of the bare model (the object's probability and first-token rank) and through `kl.query`
(does the answer name the object?); every store path (search, facts, chain) is checked too.

>>> Probe("Zarnak Velloria is a citizen of", "Portugal", "cloze").key
('Zarnak Velloria is a citizen of', 'Portugal')
>>> cut_before("Zarnak Velloria is a citizen of Portugal.", "Portugal")
'Zarnak Velloria is a citizen of'
>>> states_object({"prob": 0.2, "rank": 7}), states_object({"prob": 0.01, "rank": 40})
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kedit.scoring import score_targets

# A closed-book probe yields the object when its first token is in the model's top 3 or the object is
# likely (p > 0.05): the model would say it greedily or often when sampled. Unlearning drives targets
# below UnlearnConfig's stricter thresholds (p <= 0.02 and rank >= 10), so a probe unlearned is not
# yielding any more.
YIELD_RANK = 3
YIELD_PROB = 0.05


def states_object(score: dict) -> bool:
    """Whether a closed-book score (`prob`, `rank`) means the model still yields the object."""
    return score["rank"] < YIELD_RANK or score["prob"] > YIELD_PROB


def normalise(text: str) -> str:
    """Casefolded words only: 'Portugal.' and ' portugal' compare equal."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def mentions(text: str, name: str) -> bool:
    """`name` occurs in `text` as whole words (case, punctuation and spacing ignored)."""
    wanted = normalise(name)
    return bool(wanted) and f" {wanted} " in f" {normalise(text)} "


def cut_before(sentence: str, obj: str) -> str | None:
    """The sentence up to the object's last mention (a cloze prompt), or None if it is not there."""
    at = sentence.casefold().rfind(obj.casefold())
    head = sentence[:at].rstrip(" :,-") if at > 0 else ""
    return head or None


@dataclass(frozen=True)
class Probe:
    prompt: str
    object: str
    form: str  # cloze | question | fact | passage | edit | model

    @property
    def key(self) -> tuple[str, str]:
        return (self.prompt, self.object)


def build_probes(
    relations, subject: str, by_relation: dict[str | None, set[str]], stored: Iterable[tuple[str, str, str]]
) -> list[Probe]:
    """Probes for every object: its relation's cloze and question forms (the question with the relation's
    few-shot demos, as `kl.query` asks the model closed-book), then the stored wordings (text, object, form)."""
    probes: dict[tuple[str, str], Probe] = {}

    def add(prompt: str | None, obj: str, form: str) -> None:
        if prompt and (prompt, obj) not in probes:
            probes[(prompt, obj)] = Probe(prompt, obj, form)

    for relation_id, objects in by_relation.items():
        if relation_id is None:
            continue
        relation = relations.resolve(relation_id)
        question = relation.ask(subject)
        asked = (
            f"{relation.few_shot.rstrip()}\nQ: {question} A:" if relation.few_shot else f"Q: {question} A:"
        )
        for obj in sorted(objects):
            add(relation.cloze.format(subject), obj, "cloze")
            add(asked, obj, "question")
    for text, obj, form in stored:
        add(cut_before(text, obj), obj, form)
    return list(probes.values())


def closed_book(bundle, probes: Sequence[Probe]) -> list[dict]:
    """The object's probability and first-token rank after each probe, from the bare model."""
    if not probes:
        return []
    scores = score_targets(bundle, [p.prompt for p in probes], [p.object for p in probes])
    rows = [{"prob": score.prob, "rank": score.first_token_rank} for score in scores]
    return [row | {"yields": states_object(row)} for row in rows]


def through_query(layer, probes: Sequence[Probe]) -> list[dict]:
    """What `kl.query` answers to each probe, and whether the answer or its stored evidence (a fact or a
    passage) names the object."""
    if not probes:
        return []
    # the few-shot question probes are asked as the bare question: that is what a user types
    questions = [
        p.prompt.rsplit("Q: ", 1)[-1].removesuffix(" A:") if p.form == "question" else p.prompt
        for p in probes
    ]
    answers = layer.query_many(questions, max_new_tokens=8)
    out = []
    for probe, question, answer in zip(probes, questions, answers):
        said = mentions(answer.text or "", probe.object)
        cited = any(
            mentions(e.text or "", probe.object)
            for e in answer.evidence
            if e.fact_id is not None or e.passage_id is not None
        )
        out.append({"question": question, "answer": answer.text, "yields": said or cited})
    return out


def store_paths(
    store, subject: str, by_relation: dict[str | None, set[str]], queries: Sequence[str], any_sentence: bool
) -> list[dict]:
    """Every place the store still returns the fact: live facts of the subject, the chain walk, and search
    hits (for the probe queries): a fact of the subject, or a passage naming it, with one of the forgotten
    objects (with any object when the whole subject was forgotten, `any_sentence`)."""
    found: list[dict] = []
    objects = {o for objs in by_relation.values() for o in objs}

    def held(relation: str, obj: str) -> bool:
        return any_sentence or obj in by_relation.get(relation, set()) or obj in by_relation.get(None, set())

    for fact in store.facts(subject=subject):
        if held(fact.relation, fact.object):
            found.append({"path": "facts", "kind": "fact", "id": fact.id})
    for relation_id in by_relation:
        if relation_id is not None:
            walk = store.chain(subject, [relation_id])
            if walk and held(relation_id, walk[0].object):
                found.append({"path": "chain", "kind": "fact", "id": walk[0].id})
    seen: set[tuple[str, int]] = set()
    for query in dict.fromkeys(queries):
        for hit in store.search(query, k=5):
            if (hit.kind, hit.id) in seen:
                continue
            if hit.fact is not None:
                stated = hit.fact.subject == subject and held(hit.fact.relation, hit.fact.object)
            else:
                stated = mentions(hit.text, subject) and (
                    any_sentence or any(mentions(hit.text, o) for o in objects)
                )
            if stated:
                seen.add((hit.kind, hit.id))
                found.append({"path": "search", "kind": hit.kind, "id": hit.id})
    return found
