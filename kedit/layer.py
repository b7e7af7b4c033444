"""The public face of kedit: one object that decides where each piece of knowledge goes and answers
questions from all of it.

>>> from kedit import KnowledgeLayer                                               # doctest: +SKIP
>>> kl = KnowledgeLayer.open("kb/", model="smollm2-135m")                          # doctest: +SKIP
>>> rec = kl.edit("The mother tongue of Danielle Darrieux is", target="English",
...               subject="Danielle Darrieux")                                     # doctest: +SKIP
>>> rec.route, rec.verified                                                        # doctest: +SKIP
(<Route.BOTH: 'both'>, True)
>>> ans = kl.query("What is the mother tongue of Danielle Darrieux?")              # doctest: +SKIP
>>> ans.text, ans.trace["winner"]["tier"]                                          # doctest: +SKIP
('English', 'stored')
>>> kl.undo(rec.id)                                                                # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedit.errors import EditError, KeditError, StoreError, UnparsedTextWarning, UnsupportedArchitectureError
from kedit.forgetting import ForgetReport
from kedit.preference import Evidence, Tier
from kedit.router import VOLATILE_RELATIONS, Route, RouteDecision, Router, RouterSignals
from kedit.scoring import score_targets, token_agreement
from kedit.statements import parse_statements
from kedit.weights import EDIT, WeightStack

log = logging.getLogger(__name__)

# Fixed locality probes: general facts whose predicted tokens must not move when facts are edited. Thirty-two
# of them, so the drift budget moves in steps of ~3% rather than ~8% (one probe of twelve).
LOCALITY_PROBES: tuple[tuple[str, str], ...] = (
    ("The capital of Japan is", "Tokyo"),
    ("The capital of Italy is", "Rome"),
    ("The largest planet in the solar system is", "Jupiter"),
    ("Water is made of hydrogen and", "oxygen"),
    ("The author of Romeo and Juliet is", "William Shakespeare"),
    ("The currency of the United Kingdom is the", "pound"),
    ("The Great Wall is located in", "China"),
    ("The first president of the United States was", "George Washington"),
    ("The chemical symbol for gold is", "Au"),
    ("The official language of Brazil is", "Portuguese"),
    ("Mount Everest is located in", "Nepal"),
    ("The Mona Lisa was painted by", "Leonardo da Vinci"),
    ("The capital of Germany is", "Berlin"),
    ("The capital of Spain is", "Madrid"),
    ("The Eiffel Tower is located in", "Paris"),
    ("The largest ocean on Earth is the", "Pacific Ocean"),
    ("The theory of relativity was developed by", "Albert Einstein"),
    ("The official language of Mexico is", "Spanish"),
    ("The capital of Canada is", "Ottawa"),
    ("The Amazon River flows through", "Brazil"),
    ("Harry Potter was written by", "J. K. Rowling"),
    ("The iPhone is made by", "Apple"),
    ("The capital of Russia is", "Moscow"),
    ("The Statue of Liberty is located in", "New York"),
    ("The currency of Japan is the", "yen"),
    ("The Beatles were a band from", "Liverpool"),
    ("The capital of Australia is", "Canberra"),
    ("Windows is an operating system developed by", "Microsoft"),
    ("The official language of Egypt is", "Arabic"),
    ("The Taj Mahal is located in", "India"),
    ("The inventor of the telephone was", "Alexander Graham Bell"),
    ("The capital of Egypt is", "Cairo"),
)


@dataclass
class EditResult:
    """What `edit` did: the route taken and why, the stored fact, the weight edit and its verification."""

    id: str  # ledger id: pass it to `undo`
    route: Route
    reasons: list[str]
    subject: str
    relation: str | None
    target: str
    prompt: str
    fact_id: int | None = None
    edit_id: str | None = None
    verification: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        """The weight edit verified (target is the teacher-forced argmax), or nothing needed verifying."""
        return all(v.get("after", {}).get("accuracy", 1.0) == 1.0 for v in self.verification)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "route": self.route.value,
            "reasons": self.reasons,
            "subject": self.subject,
            "relation": self.relation,
            "target": self.target,
            "prompt": self.prompt,
            "fact_id": self.fact_id,
            "edit_id": self.edit_id,
            "verified": self.verified,
            "verification": self.verification,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class InsertResult:
    id: str
    fact_ids: list[int]
    passage_ids: list[int]
    route: Route
    reasons: list[str]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "route": self.route.value,
            "reasons": self.reasons,
            "fact_ids": self.fact_ids,
            "passage_ids": self.passage_ids,
        }


def _clean_answer(text: str) -> str:
    """First clause of a greedy continuation: ' French.\\n\\nThe ...' -> 'French'."""
    text = text.strip().split("\n")[0]
    for stop in (". ", ",", ";", " and ", " (", "!", "?"):
        at = text.find(stop)
        if at > 0:
            text = text[:at]
    if text.endswith(".") and not text[-3:-1].count("."):  # keep "D.C.", drop a sentence's full stop
        text = text[:-1]
    return text.strip().strip('"').strip()


@dataclass
class ClosedBookView:
    """A model with an empty store of its own (a temporary directory removed on close)."""

    bundle: Any
    store: Any
    scope: Any
    directory: str

    @classmethod
    def open(cls, bundle, embedder) -> ClosedBookView:
        import tempfile

        from kedit.scope import ScopeModel
        from kedit.store import KnowledgeStore

        directory = tempfile.mkdtemp(prefix="kedit-closed-book-")
        store = KnowledgeStore.open(directory, embedder=embedder)
        return cls(bundle, store, ScopeModel(store), directory)

    def close(self) -> None:
        import shutil

        try:
            self.store.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class KnowledgeLayer:
    """edit / insert / forget / query over a model's weights and a knowledge store in one directory.

    Layout of `path`: `store/` (the KnowledgeStore: record, vectors, graph), `weights/` (live weight
    changes: `weights.json` + one record per edit or unlearning run, re-applied on open).

    One weight edit (`edit`) uses AlphaEdit, a batch (`edit_many`) MEMIT. A knowledge base stacks edits
    one call after another, and AlphaEdit's cache of past edited keys (MEMIT batches' keys included) keeps
    earlier edits while later ones land: 2 x 100 sequential CounterFact edits on SmolLM2, AlphaEdit keeps
    rewrite 0.97 / neighbourhood 0.83 where ROME falls to 0.17 / 0.32. Within one large batch there is
    nothing to protect yet, and MEMIT realises more of it (MQuAKE, 100 cases' edits in one batch:
    edit-wise 0.78 vs AlphaEdit's 0.69; benchmarks/EDITING.md). `edit_method=` / `batch_method=`, or
    `method=` per call, choose others.
    """

    def __init__(self, path: Path, bundle, store, *, edit_method: str = "alphaedit", batch_method: str = "memit",
                 router: Router | None = None, edit_budget: int = 64, drift_budget: float = 0.15) -> None:
        self.path = path
        self.bundle = bundle
        self.store = store
        self.router = router or Router()
        self.edit_method = edit_method
        self.batch_method = batch_method
        self.edit_budget = edit_budget
        self.drift_budget = drift_budget
        self.editable = bundle.spec is not None
        self.editable_reason = bundle.extra.get("spec_error", "")
        self.weights = WeightStack(path / "weights", bundle, self._make_editor, self._make_unlearner)
        # locality baseline from the unedited model (before the stack is re-applied)
        self._probe_baseline = score_targets(bundle, [p for p, _ in LOCALITY_PROBES], [t for _, t in LOCALITY_PROBES])
        self.locality_drift = 0.0
        self._scope = None
        self._closed_book: ClosedBookView | None = None

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, model: str | Any = "smollm2-135m", *, embedder=None, device=None, dtype=None,
             **options) -> KnowledgeLayer:
        """Create or reopen a knowledge base; its live weight edits are re-applied to the model.

        `model`: an embedded model name, a model directory or .gguf path (loaded on `device` in `dtype`,
        see `load_model`), an already loaded `ModelBundle`, or a `(model, tokenizer)` pair of a
        transformers model you loaded yourself (`wrap_model`). Reopening needs the model (and dtype) the
        weight edits were made on; anything else is refused before a weight changes.
        """
        from kedit.runtime import ModelBundle, load_model, wrap_model

        root = Path(path).expanduser()
        if isinstance(model, ModelBundle):
            bundle = model
        elif isinstance(model, tuple) and len(model) == 2:
            bundle = wrap_model(*model)
        else:
            bundle = load_model(model, device=device, dtype=dtype)
        from kedit.store import KnowledgeStore

        store = KnowledgeStore.open(root / "store", embedder=embedder)
        try:
            layer = cls(root, bundle, store, **options)
            layer.weights.load()
            if layer.weights.changes:
                layer._measure_drift()
        except BaseException:
            store.close()
            raise
        return layer

    def close(self) -> None:
        try:
            if self._closed_book is not None:
                self._closed_book.close()
                self._closed_book = None
        finally:
            self.store.close()

    def closed_book_view(self) -> ClosedBookView:
        """The same model over an empty knowledge base: how a question is answered when nothing stored is in
        its scope (`query` answers such questions here, so kedit leaves them exactly as without it)."""
        if self._closed_book is None:
            self._closed_book = ClosedBookView.open(self.bundle, self.store.embedder)
        return self._closed_book

    def __enter__(self) -> KnowledgeLayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_editor(self):
        from kedit.editing import ParametricEditor

        return ParametricEditor(self.bundle)

    def _make_unlearner(self):
        from kedit.unlearning import Unlearner

        return Unlearner(self.bundle)

    # -- probes ---------------------------------------------------------------------------------
    def _measure_drift(self) -> float:
        now = score_targets(self.bundle, [p for p, _ in LOCALITY_PROBES], [t for _, t in LOCALITY_PROBES])
        agree = [token_agreement(b, a) for b, a in zip(self._probe_baseline, now)]
        self.locality_drift = 1.0 - sum(agree) / len(agree)
        return self.locality_drift

    def _greedy_answer(self, prompt: str, max_new_tokens: int = 6) -> str:
        return _clean_answer(self.bundle.complete(prompt, max_new_tokens=max_new_tokens))

    def _relation(self, relation: str | None, prompt_template: str | None = None) -> str | None:
        if relation is not None:
            try:
                return self.store.relations.resolve(relation).id
            except LookupError as exc:
                raise StoreError(str(exc)) from None
        if prompt_template is None:
            return None
        from kedit.scope import relation_for_template

        # the open vocabulary: a known template, else a relation whose bank holds a near-identical template
        # (the head's join_similarity, measured on counterfact-train), else a new learned relation
        relation_id, _how = relation_for_template(self.store, prompt_template, self.scope,
                                                  self.scope.head.join_similarity)
        return relation_id

    @property
    def scope(self):
        """The scope model (kedit.scope.ScopeModel) over this layer's store: which facts an input is about."""
        if self._scope is None:
            from kedit.scope import ScopeModel

            self._scope = ScopeModel(self.store)
        return self._scope

    def in_scope(self, text: str, *, as_of: Any = None):
        """The scope decision for `text`: the stored facts it is about, each with its score (best first).

        >>> kl.in_scope("Every morning, Andy Kershaw looks forward to going to work at").fact.object  # doctest: +SKIP
        'Fiat'
        """
        return self.scope.decide(text, as_of=as_of)

    def _signals(self, request, relation_id: str | None, *, valid_from, valid_to, volatile: bool = False,
                 probe: bool = True) -> RouterSignals:
        functional = None
        if relation_id is not None:
            functional = self.store.relations.resolve(relation_id).functional
        already, prob, current = False, None, None
        if probe:
            score = score_targets(self.bundle, [request.text], [request.target])[0]
            already, prob = score.accuracy == 1.0, score.prob
            current = self._greedy_answer(request.text)
        return RouterSignals(
            relation=relation_id,
            functional=functional,
            time_bounded=valid_from is not None or valid_to is not None,
            volatile=bool(volatile) or relation_id in VOLATILE_RELATIONS,
            editable=self.editable,
            editable_reason=self.editable_reason,
            already_states_target=already,
            target_prob_before=prob,
            current_answer=current,
            live_edits=self.weights.n_edits,
            edit_budget=self.edit_budget,
            locality_drift=self.locality_drift,
            drift_budget=self.drift_budget,
        )

    # -- edit -----------------------------------------------------------------------------------
    def _request(self, prompt: str | None, target: str | None, subject: str | None, relation: str | None):
        from kedit.editing import EditRequest

        if not subject or not str(subject).strip():
            raise EditError("edit needs a subject (the entity the fact is about)")
        if target is None or not str(target).strip():
            raise EditError(f"edit of '{subject}' needs a non-empty target")
        if prompt is None:
            if relation is None:
                raise EditError("edit needs a prompt, or a subject and a relation to build one")
            prompt = self.store.relations.resolve(self._relation(relation)).cloze
        return EditRequest(prompt, subject, target)

    def edit(
        self,
        prompt: str | None = None,
        target: str | None = None,
        subject: str | None = None,
        *,
        relation: str | None = None,
        route: Route | str | None = None,
        method: str | None = None,
        sadr: bool = False,
        source: str = "edit",
        valid_from: Any = None,
        valid_to: Any = None,
        volatile: bool = False,
    ) -> EditResult:
        """Write one fact where the router decides (or `route=` forces).

        Either a prompt containing the subject (or `{}`) plus `target`, or `subject`, `relation`, `target`.
        `volatile=True` marks a fact expected to change soon (the router keeps it in the store).
        """
        return self.edit_many(
            [dict(prompt=prompt, target=target, subject=subject, relation=relation, valid_from=valid_from,
                  valid_to=valid_to, volatile=volatile)],
            route=route, method=method or self.edit_method, sadr=sadr, source=source,
        )[0]

    def edit_many(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        route: Route | str | None = None,
        method: str | None = None,
        sadr: bool = False,
        source: str = "edit",
    ) -> list[EditResult]:
        """Write many facts; weight edits of the batch go into one batch edit (`batch_method`).

        Each item has keys prompt/target/subject/relation/valid_from/valid_to/volatile. Contradictory items (same
        subject and relation, different targets) are rejected before anything changes.
        """
        import time

        t0 = time.perf_counter()
        items = [dict(i) for i in items]
        if not items:
            raise EditError("edit_many got no items")
        prepared = []
        for item in items:
            request = self._request(item.get("prompt"), item.get("target"), item.get("subject"), item.get("relation"))
            relation_id = self._relation(item.get("relation"), request.prompt)
            prepared.append((item, request, relation_id))
        seen: dict[tuple[str, str], Any] = {}
        for _item, request, relation_id in prepared:
            key = (request.subject.casefold(), relation_id or request.prompt)
            other = seen.get(key)
            if other is not None and other.target.casefold() != request.target.casefold():
                raise EditError(
                    f"contradictory edits in one batch: '{other.text} {other.target}' vs "
                    f"'{request.text} {request.target}'"
                )
            seen[key] = request
        if not self.editable and route != Route.STORE:
            warnings.warn(f"kedit: the model cannot be edited ({self.editable_reason}); facts go to the store",
                          stacklevel=2)
        decisions: list[RouteDecision] = []
        routed = 0  # requests of this batch already sent to the weights count against the budget
        # the router's probes of every item at once (what `_signals` measures item by item, batched)
        from kedit.runtime.generation import complete_many

        texts = [request.text for _, request, _ in prepared]
        scores = score_targets(self.bundle, texts, [request.target for _, request, _ in prepared])
        currents = [_clean_answer(t) for t in complete_many(self.bundle, texts, 6, until="line")]
        for (item, request, relation_id), score, current in zip(prepared, scores, currents):
            signals = self._signals(request, relation_id, valid_from=item.get("valid_from"),
                                    valid_to=item.get("valid_to"), volatile=item.get("volatile", False),
                                    probe=False)
            signals = dataclasses.replace(signals, live_edits=signals.live_edits + routed,
                                          already_states_target=score.accuracy == 1.0,
                                          target_prob_before=score.prob, current_answer=current)
            decisions.append(self.router.decide(signals, route))
            routed += decisions[-1].route in (Route.PARAMETRIC, Route.BOTH)

        # weight edits: one record for every item routed to the weights
        to_weights = [i for i, d in enumerate(decisions) if d.route in (Route.PARAMETRIC, Route.BOTH)]
        edit_id, verification = None, {}
        if to_weights:
            requests = [prepared[i][1] for i in to_weights]
            chosen = method or (self.edit_method if len(requests) == 1 else self.batch_method)
            try:
                record = self.weights.editor.apply(requests, method=chosen, sadr=sadr)
            except UnsupportedArchitectureError as exc:
                self.editable, self.editable_reason = False, str(exc)
                warnings.warn(f"kedit: {exc}; storing instead", stacklevel=2)
                for i in to_weights:
                    decisions[i] = self.router.fallback_after_failed_edit(decisions[i], str(exc))
                record = None
            except EditError as exc:
                if "already answers" in str(exc):
                    for i in to_weights:
                        decisions[i] = self.router.fallback_after_failed_edit(decisions[i], str(exc))
                    record = None
                else:
                    raise
            if record is not None:
                failed = [i for i, v in zip(to_weights, record.verification) if v["after"]["accuracy"] < 1.0]
                if len(failed) == len(to_weights):
                    self.weights.editor.undo(record)
                    for i in failed:
                        acc = record.verification[to_weights.index(i)]["after"]["accuracy"]
                        decisions[i] = self.router.fallback_after_failed_edit(decisions[i], f"accuracy {acc:.2f}")
                else:
                    self.weights.push(EDIT, record)
                    edit_id = record.id
                    for i, v in zip(to_weights, record.verification):
                        verification[i] = v
                    for i in failed:
                        # the batch stays (the others verified); this fact is also recorded in the store
                        decisions[i] = RouteDecision(
                            Route.BOTH, (*decisions[i].reasons, "this fact did not verify in the batch edit; "
                                         "the store holds it for queries"), decisions[i].signals, decisions[i].forced)
                    self._measure_drift()

        # the structured facts for the store, written in one transaction (embedded in one batch) when no
        # two share a subject and relation (else one by one, so a later one supersedes an earlier one)
        facts = {
            idx: dict(subject=request.subject, relation=relation_id, object=request.target, source=source,
                      valid_from=item.get("valid_from"), valid_to=item.get("valid_to"),
                      provenance={"prompt": request.prompt, "edit_id": edit_id if idx in verification else None})
            for idx, ((item, request, relation_id), decision) in enumerate(zip(prepared, decisions))
            if decision.route in (Route.STORE, Route.BOTH) and relation_id is not None
        }
        keys = [(f["subject"].casefold(), f["relation"]) for f in facts.values()]
        if len(set(keys)) == len(keys):
            stored_facts = dict(zip(facts, self.store.add_facts(list(facts.values()))))
        else:
            stored_facts = {idx: self.store.add_fact(**f) for idx, f in facts.items()}
        results = []
        for idx, ((item, request, relation_id), decision) in enumerate(zip(prepared, decisions)):
            fact_id, passage_ids = None, []
            stored_to = decision.route in (Route.STORE, Route.BOTH)
            if idx in stored_facts:
                fact_id = stored_facts[idx].id
            elif stored_to:
                passages = self.store.add_document(f"{request.text} {request.target}.", source=source,
                                                   valid_from=item.get("valid_from"), valid_to=item.get("valid_to"))
                passage_ids = [p.id for p in passages]
                decision = RouteDecision(decision.route, (*decision.reasons, f"stored as passage {passages[0].id}"),
                                         decision.signals, decision.forced)
            entry = self.store.record_edit(
                decision=decision.route.value,
                reasons=list(decision.reasons),
                fact_id=fact_id,
                edit_id=edit_id if idx in verification else None,
                details={"kind": "edit", "request": request.to_dict(), "relation": relation_id,
                         "passage_ids": passage_ids,
                         "verification": verification.get(idx), "signals": decision.to_dict()["signals"]},
            )
            results.append(EditResult(
                id=str(entry.id), route=decision.route, reasons=list(decision.reasons), subject=request.subject,
                relation=relation_id, target=request.target, prompt=request.prompt, fact_id=fact_id,
                edit_id=edit_id if idx in verification else None,
                verification=[verification[idx]] if idx in verification else [],
                seconds=time.perf_counter() - t0,
            ))
        return results

    # -- insert ---------------------------------------------------------------------------------
    def insert(
        self,
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
            res = self.edit(subject=subject, relation=relation, target=object, route=route, source=source,
                            valid_from=valid_from, valid_to=valid_to)
            return InsertResult(res.id, [res.fact_id] if res.fact_id else [], [], res.route, res.reasons)
        if route is not None and Route.parse(route) is Route.REMOVE:
            raise EditError("insert cannot take route='remove'; use forget")
        fact_ids: list[int] = []
        passage_ids: list[int] = []
        reasons = []
        if subject is not None or relation is not None or object is not None:
            if not (subject and relation and object):
                raise StoreError("a structured fact needs subject, relation and object")
            rel = self._relation(relation)
            fact = self.store.add_fact(subject, rel, object, source=source, valid_from=valid_from, valid_to=valid_to)
            fact_ids.append(fact.id)
            reasons.append(f"structured fact ({subject}, {rel}, {object}) recorded")
        if text is not None:
            statements = (parse_statements(text if isinstance(text, str) else "", self.store.relations)
                          if extract_facts else [])
            passages = self.store.add_document(text, source=source, valid_from=valid_from, valid_to=valid_to)
            passage_ids = [p.id for p in passages]
            reasons.append(f"text stored as {len(passage_ids)} passage(s)")
            if extract_facts and not statements:
                why = ("no sentence states a known relation in its words"
                       + ("" if self.scope.link(text) else ", and it names no stored entity"))
                reasons.append(f"kept as a passage only: {why}")
                warnings.warn(f"kedit: the text is stored as a passage only: {why}", UnparsedTextWarning, stacklevel=2)
            if statements:
                facts = self.store.add_facts([
                    dict(subject=s.subject, relation=s.relation, object=s.object, sentence=s.text, source=source,
                         valid_from=valid_from, valid_to=valid_to) for s in statements
                ])
                fact_ids += [f.id for f in facts]
                reasons.append(f"{len(facts)} sentence(s) matched a relation template and became facts")
        if text is None and not fact_ids:
            raise StoreError("insert needs text or a structured fact (subject, relation, object)")
        reasons.append("inserts go to the store: a record is versioned, time-bounded and cheap to change")
        entry = self.store.record_edit(decision=Route.STORE.value, reasons=reasons,
                                       fact_id=fact_ids[0] if fact_ids else None,
                                       details={"kind": "insert", "fact_ids": fact_ids, "passage_ids": passage_ids,
                                                "source": source})
        return InsertResult(str(entry.id), fact_ids, passage_ids, Route.STORE, reasons)

    def insert_many(self, items: Iterable[Mapping[str, Any]]) -> list[InsertResult]:
        return [self.insert(**dict(item)) for item in items]

    # -- forget ---------------------------------------------------------------------------------
    def forget(
        self,
        subject: str,
        relation: str | None = None,
        object: str | None = None,
        *,
        unlearn: bool = True,
        config=None,
    ) -> ForgetReport:
        """Remove a fact from everywhere kedit keeps it (stored facts, passages that state it, graph triples,
        the weight edits that wrote it, saved evidence sessions), unlearn it from the weights if any
        closed-book probe still yields it, then verify on the model and through `query` (kedit.forgetting).

        Raises ForgetError on bad input and NothingToForgetError (changing nothing) when nothing holds it.
        """
        from kedit.forgetting import forget_fact

        return forget_fact(self, subject, relation, object, unlearn=unlearn, config=config)

    # -- undo / history -------------------------------------------------------------------------
    def undo(self, entry_id: str | int) -> dict:
        """Take back one ledger entry: its weight change (exactly) and the facts it stored."""
        entries = {str(e.id): e for e in self.store.ledger}
        entry = entries.get(str(entry_id))
        if entry is None:
            raise KeditError(f"no ledger entry {entry_id!r} (see `history()`)")
        if entry.decision == "undo":
            raise KeditError(f"ledger entry {entry_id} is itself an undo")
        if any(e.decision == "undo" and e.details.get("undoes") == entry.id for e in entries.values()):
            raise KeditError(f"ledger entry {entry_id} was already undone")
        done = []
        if entry.edit_id and self.weights.find(entry.edit_id):
            self.weights.remove(entry.edit_id)
            done.append(f"weight change {entry.edit_id} undone")
            self._measure_drift()
        fact_ids = list(entry.details.get("fact_ids") or ([entry.fact_id] if entry.fact_id else []))
        if entry.decision != Route.REMOVE.value:
            for fid in fact_ids:
                if not self.store.fact(fid).deleted:
                    self.store.delete_fact(fid)
                    done.append(f"fact {fid} tombstoned")
        passage_ids = set(entry.details.get("passage_ids") or [])
        if passage_ids and entry.decision != Route.REMOVE.value:
            documents = {p.document_id for p in self.store.passages() if p.id in passage_ids and not p.deleted_at}
            for document_id in sorted(documents):
                self.store.delete_document(document_id)
                done.append(f"document {document_id} deleted")
        if not done:
            done.append("nothing live left to take back")
        self.store.record_edit(decision="undo", reasons=done, details={"kind": "undo", "undoes": entry.id})
        return {"undone": str(entry.id), "actions": done}

    def history(self) -> list[dict]:
        """The ledger, oldest first: every edit, insert, forget and undo with its route and reasons."""
        return [
            {"id": str(e.id), "decision": e.decision, "reasons": e.reasons, "fact_id": e.fact_id,
             "edit_id": e.edit_id, "kind": e.details.get("kind"), "created_at": e.created_at,
             "details": e.details}
            for e in self.store.ledger
        ]

    def show(self, entry_id: str | int) -> dict:
        for item in self.history():
            if item["id"] == str(entry_id):
                if item["fact_id"]:
                    fact = self.store.fact(item["fact_id"])
                    item["fact"] = {"subject": fact.subject, "relation": fact.relation, "object": fact.object,
                                    "sentence": fact.sentence, "deleted_at": fact.deleted_at}
                item["live_weight_change"] = bool(item["edit_id"] and self.weights.find(item["edit_id"]))
                return item
        raise KeditError(f"no ledger entry {entry_id!r}")

    # -- query ----------------------------------------------------------------------------------
    def query(self, question: str, instructions: str | None = None, *, as_of: Any = None, k: int = 5,
              max_new_tokens: int = 12):
        """Answer `question` from every source, resolving conflicts by the knowledge-preference rules."""
        from kedit.query import answer_question

        return answer_question(self, question, instructions=instructions, as_of=as_of, k=k,
                               max_new_tokens=max_new_tokens)

    def query_many(self, questions: Iterable[str], instructions: str | None = None, *, as_of: Any = None,
                   k: int = 5, max_new_tokens: int = 12) -> list:
        """`query` for many questions at once (the model's work of all of them is batched)."""
        from kedit.query import answer_questions

        return answer_questions(self, list(questions), instructions=instructions, as_of=as_of, k=k,
                                max_new_tokens=max_new_tokens)

    # -- LangChain ------------------------------------------------------------------------------
    def as_retriever(self, k: int = 5):
        from kedit.integrations.langchain import KnowledgeRetriever

        return KnowledgeRetriever(layer=self, k=k)

    def as_runnable(self):
        from kedit.integrations.langchain import knowledge_runnable

        return knowledge_runnable(self)


__all__ = ["EditResult", "Evidence", "ForgetReport", "InsertResult", "KnowledgeLayer", "Tier"]
