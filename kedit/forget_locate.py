"""Where a fact to forget lives: the first step of `kedit.forgetting.forget_fact`.

`locate` reads the store and the weight stack and changes nothing: the stored facts, the weight edits that
wrote the fact (whole batches apart from batches that also wrote other facts), the passage sentences that
state it (with what each passage keeps once they are cut), and the evidence sessions that hold it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from kedit.forget_probes import mentions, normalise
from kedit.statements import match_relation, parse_statements
from kedit.weights import EDIT

# a sentence ends at . ! ? but not after an initial ("Frank R. Strayer")
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)\s+")


@dataclass
class Found:
    """Everything the store and the weight stack hold of the fact (nothing is changed while finding)."""

    facts: list = field(default_factory=list)
    by_relation: dict = field(default_factory=lambda: defaultdict(set))  # relation id (or None) -> objects
    stored: list = field(default_factory=list)  # (text, object, form) wordings the user stored
    redact: dict = field(default_factory=dict)  # passage id -> remaining text ("" = tombstone)
    edits: list = field(default_factory=list)
    edits_kept: list = field(default_factory=list)
    sessions: list = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.facts or self.redact or self.edits or self.edits_kept or self.sessions)


def locate(layer, subject: str, relation_id: str | None, obj: str | None) -> Found:
    """Find every place `layer` keeps the fact (stored facts, weight edits, passage sentences, evidence
    sessions) and the objects it states; nothing is changed."""
    store, relations = layer.store, layer.store.relations
    found = Found()
    whole = relation_id is None and obj is None
    names = [subject] + [alias for alias, canonical in store.record.aliases() if canonical == subject]
    found.facts = store.facts(subject=subject, relation=relation_id, object=obj)
    for fact in found.facts:
        found.by_relation[fact.relation].add(fact.object)
        found.stored.append((fact.sentence, fact.object, "fact"))
    if obj is not None:
        found.by_relation[relation_id].add(obj)

    for change in layer.weights.changes:
        if change.kind != EDIT:
            continue
        requests = list(change.record.requests)
        hits = [
            r
            for r in requests
            if r.subject.casefold() == subject.casefold()
            and (obj is None or r.target.casefold() == obj.casefold())
            and (relation_id is None or match_relation(r.prompt, relations) in (relation_id, None))
        ]
        for r in hits:
            found.by_relation[relation_id or match_relation(r.prompt, relations)].add(r.target)
            found.stored.append((f"{r.text} {r.target}", r.target, "edit"))
        if hits:
            (found.edits if len(hits) == len(requests) else found.edits_kept).append(change.id)

    def states(sentence: str) -> bool:
        if not any(mentions(sentence, n) for n in names):
            return False
        if whole:
            return True
        objects = {o for objs in found.by_relation.values() for o in objs}
        if any(mentions(sentence, o) for o in objects):
            return True
        return relation_id is not None and any(
            s.relation == relation_id and normalise(s.subject) in {normalise(n) for n in names}
            for s in parse_statements(sentence, relations)
        )

    for passage in store.passages():
        if not any(mentions(passage.text, n) for n in names):
            continue
        sentences = _SENTENCE_END.split(passage.text)
        cut = [s for s in sentences if states(s)]
        if not cut:
            continue
        found.redact[passage.id] = " ".join(s for s in sentences if s not in cut).strip()
        for sentence in cut:
            for statement in parse_statements(sentence, relations):
                if normalise(statement.subject) in {normalise(n) for n in names} and (
                    relation_id is None or statement.relation == relation_id
                ):
                    found.by_relation[statement.relation].add(statement.object)
            for o in {o for objs in found.by_relation.values() for o in objs}:
                if mentions(sentence, o):
                    found.stored.append((sentence, o, "passage"))

    objects = {o for objs in found.by_relation.values() for o in objs}
    fact_ids = {f.id for f in found.facts}
    for session in store.evidence_sessions():
        blob = json.dumps(
            [session.question, session.slots, [asdict(r) for r in session.rounds]], ensure_ascii=False
        )
        held_ids = {s.get("fact_id") for s in session.slots} | {
            h.get("id") for r in session.rounds for h in r.hits if h.get("kind") == "fact"
        }
        passage_ids = {h.get("id") for r in session.rounds for h in r.hits if h.get("kind") == "passage"}
        if (
            held_ids & fact_ids
            or passage_ids & set(found.redact)
            or (mentions(blob, subject) and (whole or any(mentions(blob, o) for o in objects)))
        ):
            found.sessions.append(session.id)
    return found
