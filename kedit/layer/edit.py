"""`edit_many` as an explicit plan: validate → probe → route → write the weights (verify, fall back) →
write the store and the ledger. Each step is a function of the layer and the batch's `PlannedEdit`s."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kedit.answers import clean_answer
from kedit.errors import EditError, NothingToEditError, UnsupportedArchitectureError
from kedit.layer.results import EditResult
from kedit.router import VOLATILE_RELATIONS, Route, RouteDecision, RouterSignals
from kedit.scoring import score_targets
from kedit.weights import EDIT

_TO_WEIGHTS = (Route.PARAMETRIC, Route.BOTH)
_TO_STORE = (Route.STORE, Route.BOTH)


@dataclass(frozen=True)
class ValidatedEdit:
    """One item of a batch, checked: its edit request and the relation it states."""

    item: dict[str, Any]
    request: Any  # kedit.editing.EditRequest
    relation_id: str | None


@dataclass
class PlannedEdit:
    """A validated item with the router's decision, on its way through the writes."""

    item: dict[str, Any]
    request: Any  # kedit.editing.EditRequest
    relation_id: str | None
    decision: RouteDecision
    verification: dict | None = None  # the weight edit's check of this item, when it went to the weights
    edit_id: str | None = None  # the weight edit that wrote it (a batch's items may be written in parts)


def validate(layer, items: Iterable[Mapping[str, Any]]) -> list[ValidatedEdit]:
    """Requests and relations for every item; contradictory items (same subject and relation, different
    targets) are rejected before anything changes."""
    plan = []
    for raw in items:
        item = dict(raw)
        request = layer._request(
            item.get("prompt"), item.get("target"), item.get("subject"), item.get("relation")
        )
        plan.append(ValidatedEdit(item, request, layer._relation(item.get("relation"), request.prompt)))
    if not plan:
        raise EditError("edit_many got no items")
    seen: dict[tuple[str, str], Any] = {}
    for planned in plan:
        request = planned.request
        key = (request.subject.casefold(), planned.relation_id or request.prompt)
        other = seen.get(key)
        if other is not None and other.target.casefold() != request.target.casefold():
            raise EditError(
                f"contradictory edits in one batch: '{other.text} {other.target}' vs '{request.text} {request.target}'"
            )
        seen[key] = request
    return plan


def router_signals(
    layer,
    request,
    relation_id: str | None,
    *,
    valid_from,
    valid_to,
    volatile: bool = False,
    probe: bool = True,
) -> RouterSignals:
    """What the router decides an edit on: the relation's kind, the layer's budgets and, with `probe`, what
    the model answers now."""
    functional = None
    if relation_id is not None:
        functional = layer.store.relations.resolve(relation_id).functional
    already, prob, current = False, None, None
    if probe:
        score = score_targets(layer.bundle, [request.text], [request.target])[0]
        already, prob = score.accuracy == 1.0, score.prob
        current = layer._greedy_answer(request.text)
    return RouterSignals(
        relation=relation_id,
        functional=functional,
        time_bounded=valid_from is not None or valid_to is not None,
        volatile=bool(volatile) or relation_id in VOLATILE_RELATIONS,
        editable=layer.editable,
        editable_reason=layer.editable_reason,
        already_states_target=already,
        target_prob_before=prob,
        current_answer=current,
        live_edits=layer.weights.n_edits,
        edit_budget=layer.edit_budget,
        locality_drift=layer.locality_drift,
        drift_budget=layer.drift_budget,
    )


def probe_and_route(layer, validated: list[ValidatedEdit], route: Route | str | None) -> list[PlannedEdit]:
    """The router's probes of every item at once (what `router_signals` measures item by item, batched),
    then one decision per item; items already sent to the weights count against the edit budget."""
    from kedit.runtime.generation import complete_many

    texts = [v.request.text for v in validated]
    scores = score_targets(layer.bundle, texts, [v.request.target for v in validated])
    currents = [clean_answer(t) for t in complete_many(layer.bundle, texts, 6, until="line")]
    routed, plan = 0, []
    for edit, score, current in zip(validated, scores, currents):
        item = edit.item
        signals = router_signals(
            layer,
            edit.request,
            edit.relation_id,
            valid_from=item.get("valid_from"),
            valid_to=item.get("valid_to"),
            volatile=item.get("volatile", False),
            probe=False,
        )
        signals = dataclasses.replace(
            signals,
            live_edits=signals.live_edits + routed,
            already_states_target=score.accuracy == 1.0,
            target_prob_before=score.prob,
            current_answer=current,
        )
        plan.append(PlannedEdit(item, edit.request, edit.relation_id, layer.router.decide(signals, route)))
        routed += plan[-1].decision.route in _TO_WEIGHTS
    return plan


def _fall_back(layer, planned: PlannedEdit, why: str) -> None:
    planned.decision = layer.router.fallback_after_failed_edit(planned.decision, why)


# Facts the router sends to the weights in one batch are written this many at a time, the locality probes
# read between parts, so the drift budget holds inside a batch as between batches (one 100-fact batch edit
# read the budget once, before it: CounterFact val through the router, other subjects' answers unchanged
# 0.48). Ten keeps the overshoot past the budget to one part; forced batches are written whole.
ROUTED_PART = 10


def write_weights(layer, plan: list[PlannedEdit], method: str | None, sadr: bool) -> None:
    """The weight edits of the batch: items the caller forced to the weights in one edit, items the router
    sent there in parts of `ROUTED_PART`, the router asked again between parts (a part it finds over the
    drift budget goes to the store, with that reason). Each edit is verified, kept or taken back."""
    to_weights = [p for p in plan if p.decision.route in _TO_WEIGHTS]
    forced = [p for p in to_weights if p.decision.forced]
    routed = [p for p in to_weights if not p.decision.forced]
    parts = [forced] if forced else []
    parts += [routed[i : i + ROUTED_PART] for i in range(0, len(routed), ROUTED_PART)]
    for part in parts:
        if not part[0].decision.forced and layer.locality_drift >= layer.drift_budget:
            for planned in part:
                signals = dataclasses.replace(planned.decision.signals, locality_drift=layer.locality_drift)
                planned.decision = layer.router.decide(signals)
            part = [p for p in part if p.decision.route in _TO_WEIGHTS]
            if not part:
                continue
        _write_part(layer, part, method, sadr)


def _write_part(layer, part: list[PlannedEdit], method: str | None, sadr: bool) -> None:
    """One weight edit of `part`, verified, kept or taken back.

    Fallbacks (the item goes to the store, the reason to the ledger): the architecture cannot be edited,
    the model already answers, or no item of the edit verified. An item that fails inside an edit whose
    others verified stays in the edit and is also stored."""
    requests = [p.request for p in part]
    chosen = method or (layer.edit_method if len(requests) == 1 else layer.batch_method)
    try:
        record = layer.weights.editor.apply(requests, method=chosen, sadr=sadr)
    except UnsupportedArchitectureError as exc:
        layer.editable, layer.editable_reason = False, str(exc)
        warnings.warn(f"kedit: {exc}; storing instead", stacklevel=4)
        for planned in part:
            _fall_back(layer, planned, str(exc))
        return
    except NothingToEditError as exc:
        for planned in part:
            _fall_back(layer, planned, str(exc))
        return
    failed = [p for p, v in zip(part, record.verification) if v["after"]["accuracy"] < 1.0]
    if len(failed) == len(part):
        layer.weights.editor.undo(record)
        for planned, check in zip(part, record.verification):
            _fall_back(layer, planned, f"accuracy {check['after']['accuracy']:.2f}")
        return
    layer.weights.push(EDIT, record)
    for planned, check in zip(part, record.verification):
        planned.verification, planned.edit_id = check, record.id
    for planned in failed:
        # the edit stays (the others verified); this fact is also recorded in the store
        d = planned.decision
        planned.decision = RouteDecision(
            Route.BOTH,
            (*d.reasons, "this fact did not verify in the batch edit; the store holds it for queries"),
            d.signals,
            d.forced,
        )
    layer._measure_drift()


def write_store(layer, plan: list[PlannedEdit], source: str, t0: float) -> list[EditResult]:
    """The store's share of the batch and one ledger entry per item.

    Structured facts are written in one transaction (embedded in one batch) when no two share a subject and
    relation, else one by one, so a later one supersedes an earlier one; an item without a relation is
    stored as a passage."""
    facts = {
        idx: dict(
            subject=p.request.subject,
            relation=p.relation_id,
            object=p.request.target,
            source=source,
            valid_from=p.item.get("valid_from"),
            valid_to=p.item.get("valid_to"),
            provenance={"prompt": p.request.prompt, "edit_id": p.edit_id},
        )
        for idx, p in enumerate(plan)
        if p.decision.route in _TO_STORE and p.relation_id is not None
    }
    keys = [(f["subject"].casefold(), f["relation"]) for f in facts.values()]
    if len(set(keys)) == len(keys):
        stored = dict(zip(facts, layer.store.add_facts(list(facts.values()))))
    else:
        stored = {idx: layer.store.add_fact(**f) for idx, f in facts.items()}
    results = []
    for idx, planned in enumerate(plan):
        request, decision = planned.request, planned.decision
        fact_id, passage_ids = None, []
        if idx in stored:
            fact_id = stored[idx].id
        elif decision.route in _TO_STORE:
            passages = layer.store.add_document(
                f"{request.text} {request.target}.",
                source=source,
                valid_from=planned.item.get("valid_from"),
                valid_to=planned.item.get("valid_to"),
            )
            passage_ids = [p.id for p in passages]
            decision = RouteDecision(
                decision.route,
                (*decision.reasons, f"stored as passage {passages[0].id}"),
                decision.signals,
                decision.forced,
            )
        own_edit = planned.edit_id
        entry = layer.store.record_edit(
            decision=decision.route.value,
            reasons=list(decision.reasons),
            fact_id=fact_id,
            edit_id=own_edit,
            details={
                "kind": "edit",
                "request": request.to_dict(),
                "relation": planned.relation_id,
                "passage_ids": passage_ids,
                "verification": planned.verification,
                "signals": decision.to_dict()["signals"],
            },
        )
        results.append(
            EditResult(
                id=str(entry.id),
                route=decision.route,
                reasons=list(decision.reasons),
                subject=request.subject,
                relation=planned.relation_id,
                target=request.target,
                prompt=request.prompt,
                fact_id=fact_id,
                edit_id=own_edit,
                verification=[planned.verification] if planned.verification else [],
                seconds=time.perf_counter() - t0,
            )
        )
    return results


def edit_many(
    layer,
    items: Iterable[Mapping[str, Any]],
    *,
    route: Route | str | None,
    method: str | None,
    sadr: bool,
    source: str,
) -> list[EditResult]:
    """The plan, step by step (see the module docstring)."""
    t0 = time.perf_counter()
    validated = validate(layer, items)
    if not layer.editable and route != Route.STORE:
        warnings.warn(
            f"kedit: the model cannot be edited ({layer.editable_reason}); facts go to the store",
            stacklevel=3,
        )
    plan = probe_and_route(layer, validated, route)
    write_weights(layer, plan, method, sadr)
    return write_store(layer, plan, source, t0)


__all__ = [
    "PlannedEdit",
    "ValidatedEdit",
    "edit_many",
    "probe_and_route",
    "validate",
    "write_store",
    "write_weights",
]
