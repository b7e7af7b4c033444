"""`forget`: remove a fact from every place kedit keeps it, then verify it is gone from what a user sees.

Where a fact lives, and what forgetting does there:
- stored facts: tombstoned (kept in `store.history` as forgotten; gone from search, graph, chains);
- passages: each sentence that states the fact (it names the subject, or an alias, and one of the forgotten
  objects; every sentence naming the subject when the whole subject is forgotten) is cut out and the rest
  re-indexed under the same id; a passage with nothing left is tombstoned (its document too, once empty);
- graph triples: removed with the facts' tombstones;
- weight edits that wrote it: undone exactly (`WeightStack.remove`); a batch edit that also wrote other
  facts is kept and the fact is unlearned instead (undoing it would silently take the others back);
- evidence-pool sessions that hold it: erased;
- earlier ledger lines that recorded it (the edit's request, its reasons): the object cut out ("[forgotten]");
- the model's own memory: unlearned (GU-projected NPO) over every closed-book probe that still yields it;
  the unlearning record saved under `weights/` keeps its scores and weights, not the forgotten object.

Finding where the fact lives is `kedit.forget_locate`; this module changes those places and verifies.

Verification (MUSE-style, `kedit.forget_probes`): the relation's cloze and question forms and the stored
wordings, asked of the bare model and through `kl.query`, plus the store's search, facts and chain paths.

The ledger keeps that something was forgotten, never the content: the subject, the relation id, counts,
ids, and per forgotten object a salted SHA-256 fingerprint of (subject, relation, object) with a random
salt per entry. Someone who already knows a candidate fact can check it against the fingerprint; the
fingerprint does not disclose the object (a low-entropy object, e.g. a country, can be guessed by trying
candidates: the fingerprint confirms, it does not hide a guessable value).

>>> fp = fingerprint("Zarnak Velloria", "P27", "Portugal", salt="00ff")
>>> fp == fingerprint("zarnak  velloria", "P27", "portugal.", salt="00ff"), len(fp)
(True, 64)
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass, field, replace

from kedit.errors import ForgetError, NothingToForgetError
from kedit.forget_locate import locate
from kedit.forget_probes import (
    Probe,
    build_probes,
    closed_book,
    normalise,
    store_paths,
    through_query,
)
from kedit.scoring import score_targets
from kedit.weights import UNLEARN


@dataclass
class ForgetReport:
    """What `forget` removed, where, and how every probe of the fact scores afterwards."""

    id: str
    subject: str
    relation: str | None
    objects: list[str]
    facts_deleted: list[int]
    edits_undone: list[str]
    unlearn_id: str | None
    before: list[dict]  # per object: prob and rank after its cloze prompt, before forgetting
    after: list[dict]
    retain_change: float | None  # mean |Δprob| of retain probes (unlearning only)
    verified: bool
    reasons: list[str]
    passages_redacted: list[int] = field(default_factory=list)
    passages_deleted: list[int] = field(default_factory=list)
    sessions_erased: list[int] = field(default_factory=list)
    edits_kept: list[str] = field(default_factory=list)  # batch edits also holding other facts: unlearned
    ledger_scrubbed: list[int] = field(default_factory=list)  # earlier ledger lines the object was cut from
    # per probe: prompt, form, object, closed_book_before / closed_book_after {prob, rank, yields},
    # query {question, answer, yields}
    probes: list[dict] = field(default_factory=list)
    store_hits: list[dict] = field(
        default_factory=list
    )  # store paths that still return it (empty if verified)

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(subject: str, relation: str | None, obj: str, *, salt: str) -> str:
    """Salted SHA-256 of the normalised (subject, relation, object): what the ledger keeps of a forgotten fact."""
    text = "\x1f".join([salt, normalise(subject), relation or "", normalise(obj)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


FORGOTTEN = "[forgotten]"


def _scrub(value, patterns: list[re.Pattern]):
    """`value` (JSON-like) with every mention of a forgotten object replaced by FORGOTTEN."""
    if isinstance(value, str):
        for pattern in patterns:
            value = pattern.sub(FORGOTTEN, value)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, patterns) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, patterns) for v in value]
    return value


def _scrub_ledger(
    store,
    subject: str,
    relation_id: str | None,
    objects: list[str],
    fact_ids: set[int],
    passage_ids: set[int],
    edit_ids: set[str],
) -> list[int]:
    """Cut the forgotten objects out of the ledger lines that recorded the fact (linked by fact, passage or
    weight-edit id, or an edit request of this subject and object); returns the ids of the lines rewritten."""
    patterns = [re.compile(rf"(?<!\w){re.escape(o)}(?!\w)", re.IGNORECASE) for o in objects]
    folded = {o.casefold() for o in objects}
    rewritten = []
    for entry in store.ledger:
        details = entry.details or {}
        request = details.get("request") or {}
        same_subject = str(request.get("subject", subject)).casefold() == subject.casefold()
        # a batch edit's id is on the lines of all its facts: only this subject's lines are linked by it
        linked = (
            entry.fact_id in fact_ids
            or (entry.edit_id in edit_ids and same_subject)
            or set(details.get("fact_ids") or []) & fact_ids
            or set(details.get("passage_ids") or []) & passage_ids
            or (
                request
                and same_subject
                and str(request.get("target", "")).casefold() in folded
                and (relation_id is None or details.get("relation") in (relation_id, None))
            )
        )
        text = json.dumps([entry.reasons, details], ensure_ascii=False)
        if not linked or not any(p.search(text) for p in patterns):
            continue
        store.redact_edit(entry.id, _scrub(list(entry.reasons), patterns), _scrub(dict(details), patterns))
        rewritten.append(entry.id)
    return rewritten


def _retain_pairs(layer, subject: str, forget_prompts: set[str], n: int = 8) -> list[tuple[str, str]]:
    """Retain set: neighbouring facts the model states now (other stored facts and the locality probes),
    each paired with the model's current answer so unlearning keeps them."""
    from kedit.probes import LOCALITY_PROBES

    prompts: list[str] = []
    for fact in layer.store.facts()[:200]:
        if fact.subject.casefold() == subject.casefold():
            continue
        prompts.append(layer.store.relations.resolve(fact.relation).cloze.format(fact.subject))
        if len(prompts) >= n // 2:
            break
    prompts += [p for p, _ in LOCALITY_PROBES if p not in forget_prompts][: n - len(prompts)]
    prompts = [p for p in dict.fromkeys(prompts) if p not in forget_prompts]
    return [(p, a) for p in prompts if (a := layer._greedy_answer(p))]


def _model_guess(layer, subject: str, relation_id: str) -> str | None:
    """The model's own confident answer to the relation's cloze (top token, mean p >= 0.1), if any."""
    cloze = layer.store.relations.resolve(relation_id).cloze.format(subject)
    guess = layer._greedy_answer(cloze)
    if not guess:
        return None
    score = score_targets(layer.bundle, [cloze], [guess])[0]
    return guess if score.first_token_rank == 0 and score.mean_prob >= 0.1 else None


def _headline(probes: list[Probe], scores: list[dict]) -> list[dict]:
    """Per object, its cloze probe's score (the first probe of the object when it has no cloze form)."""
    out: dict[str, dict] = {}
    for probe, score in sorted(zip(probes, scores), key=lambda ps: ps[0].form != "cloze"):
        out.setdefault(probe.object, {"object": probe.object, "prob": score["prob"], "rank": score["rank"]})
    return [out[o] for o in sorted(out)]


def _unlearn_yielding(
    layer, subject: str, probes: list[Probe], objects: list[str], unlearn: bool, config, reasons: list[str]
) -> tuple[str | None, float | None, list[dict]]:
    """Unlearn every probe whose closed-book answer still yields the object, in one run over all of them;
    returns the run's id (None when none was needed or allowed), its retain change, and the probes' scores."""
    now = closed_book(layer.bundle, probes)
    still = [p for p, s in zip(probes, now) if s["yields"]]
    if not still:
        return None, None, now
    if not unlearn:
        reasons.append(f"{len(still)} closed-book probe(s) still yield it and unlearn=False")
        return None, None, now
    from kedit.unlearning import FactNotKnownError

    try:
        record = layer.weights.unlearner.forget(
            forget=[p.key for p in still],
            retain=_retain_pairs(layer, subject, {p.prompt for p in probes}),
            config=config,
        )
    except FactNotKnownError:
        reasons.append("no unlearning needed: the model no longer states it")
        return None, None, now
    # the saved run needs its weights, not the forgotten text: keep the scores, drop the object
    patterns = [re.compile(rf"(?<!\w){re.escape(o)}(?!\w)", re.IGNORECASE) for o in objects]
    record.forget = [replace(c, target=FORGOTTEN) for c in record.forget]
    record.reasons = _scrub(list(record.reasons), patterns)
    layer.weights.push(UNLEARN, record)
    how = f"{'GU-projected ' if record.config.projection else ''}{record.config.objective.upper()}"
    reasons.append(
        f"unlearned from the weights over {len(still)} closed-book probe(s): {record.steps} {how} "
        f"step(s) (record {record.id})"
    )
    return record.id, record.retain_mean_abs_change, closed_book(layer.bundle, probes)


def forget_fact(
    layer,
    subject: str,
    relation: str | None = None,
    object: str | None = None,
    *,
    unlearn: bool = True,
    config=None,
) -> ForgetReport:
    """Forget (subject, relation, object) from `layer` everywhere (see the module docstring) and verify.

    `relation` and `object` narrow what is forgotten; with neither, everything about `subject` goes.
    Raises ForgetError on bad input and NothingToForgetError when nothing holds the fact; nothing is
    changed in either case.
    """
    if not isinstance(subject, str) or not subject.strip():
        raise ForgetError("forget needs a subject (the entity the fact is about)")
    if object is not None and (not isinstance(object, str) or not object.strip()):
        raise ForgetError("forget's object, when given, must be a non-empty string")
    subject, object = subject.strip(), object.strip() if object else None
    relation_id = layer._relation(relation) if relation is not None else None
    store, bundle = layer.store, layer.bundle

    found = locate(layer, subject, relation_id, object)
    if not found.anything and relation_id is not None and object is None and unlearn:
        guess = _model_guess(layer, subject, relation_id)
        if guess:
            found.by_relation[relation_id].add(guess)
    probes = build_probes(store.relations, subject, found.by_relation, found.stored)
    before = closed_book(bundle, probes)
    if not found.anything and not any(b["yields"] for b in before):
        what = f"({subject}, {relation or '*'}, {object or '*'})"
        raise NothingToForgetError(
            f"nothing to forget: no stored fact, passage, weight edit or evidence session holds {what}, "
            "and the model does not state it"
        )

    reasons: list[str] = []
    deleted = store.forget(subject, relation_id, object) if found.facts else []
    if deleted:
        reasons.append(f"{len(deleted)} stored fact(s) tombstoned (and their graph triples removed)")
    redacted = [store.redact_passage(pid, text).id for pid, text in found.redact.items() if text]
    gone = [p.id for p in store.delete_passages([pid for pid, text in found.redact.items() if not text])]
    if redacted or gone:
        reasons.append(
            f"{len(redacted)} passage(s) redacted (the stating sentences cut), {len(gone)} tombstoned"
        )
    for change_id in found.edits:
        layer.weights.remove(change_id)
    if found.edits:
        reasons.append(f"weight edit(s) {', '.join(found.edits)} that wrote it undone")
    if found.edits_kept:
        reasons.append(
            f"batch edit(s) {', '.join(found.edits_kept)} also wrote other facts: kept, the fact "
            "is unlearned instead"
        )
    erased = store.delete_evidence_sessions(found.sessions) if found.sessions else []
    if erased:
        reasons.append(f"{len(erased)} evidence-pool session(s) that held it erased")

    objects = sorted({o for objs in found.by_relation.values() for o in objs})
    scrubbed = _scrub_ledger(
        store,
        subject,
        relation_id,
        objects,
        {f.id for f in found.facts},
        set(found.redact),
        set(found.edits) | set(found.edits_kept),
    )
    if scrubbed:
        reasons.append(f"the forgotten value cut from {len(scrubbed)} earlier ledger line(s)")

    unlearn_id, retain_change, now = _unlearn_yielding(
        layer, subject, probes, objects, unlearn, config, reasons
    )
    if found.edits or unlearn_id:
        layer._measure_drift()

    queried = through_query(layer, probes)
    hits = store_paths(
        store,
        subject,
        found.by_relation,
        [p.prompt for p in probes if p.form != "question"] + [q["question"] for q in queried],
        any_sentence=relation_id is None and object is None,
    )
    yielding = sum(s["yields"] for s in now) + sum(q["yields"] for q in queried)
    verified = not yielding and not hits
    reasons.append(
        f"verified: none of {len(probes)} probe(s) yields it closed-book or through query, and no "
        "store path returns it"
        if verified
        else f"NOT verified: {yielding} probe answer(s) still yield it, {len(hits)} store path(s) return it"
    )
    salt = secrets.token_hex(16)
    by_object = {o: r for r, objs in found.by_relation.items() for o in objs}
    entry = store.record_edit(
        decision="remove",
        reasons=reasons,
        edit_id=unlearn_id,
        details={
            "kind": "forget",
            "subject": subject,
            "relation": relation_id,
            "salt": salt,
            "fingerprints": sorted(fingerprint(subject, by_object[o], o, salt=salt) for o in objects),
            "facts": [f.id for f in deleted],
            "passages_redacted": redacted,
            "passages_deleted": gone,
            "sessions_erased": erased,
            "ledger_scrubbed": scrubbed,
            "edits_undone": list(found.edits),
            "edits_kept": found.edits_kept,
            "probes": len(probes),
            "verified": verified,
        },
    )
    report_probes = [
        {
            "prompt": p.prompt,
            "form": p.form,
            "object": p.object,
            "closed_book_before": b,
            "closed_book_after": a,
            "query": q,
        }
        for p, b, a, q in zip(probes, before, now, queried)
    ]
    return ForgetReport(
        str(entry.id),
        subject,
        relation_id,
        objects,
        [f.id for f in deleted],
        list(found.edits),
        unlearn_id,
        _headline(probes, before),
        _headline(probes, now),
        retain_change,
        verified,
        reasons,
        passages_redacted=redacted,
        passages_deleted=gone,
        sessions_erased=erased,
        ledger_scrubbed=scrubbed,
        edits_kept=found.edits_kept,
        probes=report_probes,
        store_hits=hits,
    )
