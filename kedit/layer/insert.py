"""`insert`: a passage, its sentences that state a relation, or a structured fact, into the store."""

from __future__ import annotations

import warnings
from typing import Any

from kedit.errors import EditError, StoreError, UnparsedTextWarning
from kedit.layer.results import InsertResult
from kedit.router import Route
from kedit.statements import parse_statements


def insert(
    layer,
    text: str | None = None,
    *,
    subject: str | None = None,
    relation: str | None = None,
    object: str | None = None,
    source: str = "user",
    valid_from: Any = None,
    valid_to: Any = None,
    route: Route | str | None = None,
    extract_facts: bool = True,
) -> InsertResult:
    """Insert a passage (`text`) or a structured fact (`subject`, `relation`, `object`) into the store.

    Sentences of `text` that state a known relation ("The capital of X is Y.") also become facts,
    unless `extract_facts=False` (the text is kept as a passage only, e.g. an unverified source).
    `route="both"`/`"parametric"` sends a structured fact through `edit` instead.
    """
    if route is not None and Route.parse(route) in (Route.BOTH, Route.PARAMETRIC):
        if subject is None or relation is None or object is None:
            raise EditError("route=both/parametric needs a structured fact: subject, relation and object")
        res = layer.edit(
            subject=subject,
            relation=relation,
            target=object,
            route=route,
            source=source,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        return InsertResult(res.id, [res.fact_id] if res.fact_id else [], [], res.route, res.reasons)
    if route is not None and Route.parse(route) is Route.REMOVE:
        raise EditError("insert cannot take route='remove'; use forget")
    fact_ids: list[int] = []
    passage_ids: list[int] = []
    reasons = []
    if subject is not None or relation is not None or object is not None:
        if not (subject and relation and object):
            raise StoreError("a structured fact needs subject, relation and object")
        rel = layer._relation(relation)
        fact = layer.store.add_fact(
            subject, rel, object, source=source, valid_from=valid_from, valid_to=valid_to
        )
        fact_ids.append(fact.id)
        reasons.append(f"structured fact ({subject}, {rel}, {object}) recorded")
    if text is not None:
        statements = (
            parse_statements(
                text if isinstance(text, str) else "", layer.store.relations, layer.store.linker.candidates
            )
            if extract_facts
            else []
        )
        passages = layer.store.add_document(text, source=source, valid_from=valid_from, valid_to=valid_to)
        passage_ids = [p.id for p in passages]
        reasons.append(f"text stored as {len(passage_ids)} passage(s)")
        if extract_facts and not statements:
            why = "no sentence states a known relation in its words" + (
                "" if layer.scope.link(text) else ", and it names no stored entity"
            )
            reasons.append(f"kept as a passage only: {why}")
            warnings.warn(
                f"kedit: the text is stored as a passage only: {why}", UnparsedTextWarning, stacklevel=3
            )
        if statements:
            facts = layer.store.add_facts(
                [
                    dict(
                        subject=s.subject,
                        relation=s.relation,
                        object=s.object,
                        sentence=s.text,
                        source=source,
                        valid_from=valid_from,
                        valid_to=valid_to,
                    )
                    for s in statements
                ]
            )
            fact_ids += [f.id for f in facts]
            reasons.append(f"{len(facts)} sentence(s) matched a relation template and became facts")
    if text is None and not fact_ids:
        raise StoreError("insert needs text or a structured fact (subject, relation, object)")
    reasons.append("inserts go to the store: a record is versioned, time-bounded and cheap to change")
    entry = layer.store.record_edit(
        decision=Route.STORE.value,
        reasons=reasons,
        fact_id=fact_ids[0] if fact_ids else None,
        details={"kind": "insert", "fact_ids": fact_ids, "passage_ids": passage_ids, "source": source},
    )
    return InsertResult(str(entry.id), fact_ids, passage_ids, Route.STORE, reasons)


__all__ = ["insert"]
