"""`layer`: kedit's own path, `KnowledgeLayer.edit_many` (the router: weights, store or both per fact) and
`KnowledgeLayer.query` for multi-hop questions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.data.cases import FactEdit
from benchmarks.data.prompts import MQuAKEPrompts
from benchmarks.methods.base import Applied, MultiHopAnswer
from benchmarks.methods.store import StoreBacked, Written
from kedit.errors import KeditError


class LayerMethod(StoreBacked):
    """kedit's own path: facts go through `KnowledgeLayer.edit_many` (the router picks weights, store or
    both per fact), multi-hop questions through `KnowledgeLayer.query` (graph chains + evidence pool).

    Probes that read the model (KnowEdit scores, MQuAKE cloze/hop probes, fluency) see the edited
    weights; a store-only fact is put before a probe only when the probe is in its scope (the scope
    decision `kl.query` uses, `kl.in_scope`), so unrelated probes see the model alone. Contradictory items of one batch (same subject and relation, another target), which
    `edit_many` refuses as a whole, are left out after the first and reported as the batch's edit error.
    """

    name = "layer"
    include_superseded = False  # the store's own view: a newer fact supersedes an older one
    asks_all_questions = True  # its answers do not depend on the gold: the runner may ask all 3 at once

    def __init__(self, bundle, *, route: str | None = None, k: int | None = None, embedder=None) -> None:
        super().__init__(bundle, k=k, embedder=embedder)
        self.route = route
        self._store_only: set[tuple[str, int]] = set()

    def settings(self) -> dict[str, Any]:  # the weight editors too: the layer's defaults may change
        return {
            "k": self.k,
            "route": self.route or "router",
            "edit_method": self.kl.edit_method,
            "batch_method": self.kl.batch_method,
        }

    def _allowed(self, hit) -> bool:
        return (hit.kind, hit.id) in self._store_only

    def _refresh_store_only(self) -> None:
        from kedit import Route

        keep: set[tuple[str, int]] = set()
        for written in self._live:
            for r in written.results:
                if r.route != Route.STORE:
                    continue
                if r.fact_id is not None:
                    keep.add(("fact", r.fact_id))
            keep |= {("passage", p.id) for p in self._passages_of(written.tag)}
        self._store_only = keep

    def retrieve(self, query: str, k: int | None = None) -> list[str]:
        """The sentences of the store-only facts `query` is in scope of (kl.in_scope: the decision
        `kl.query` makes), never the top-k nearest facts: an unrelated prompt gets no context."""
        if not self._store_only:
            return []
        k = self.k if k is None else k
        found = [c.fact for c in self.kl.in_scope(query).in_scope if ("fact", c.fact.id) in self._store_only]
        return [f.sentence for f in found][:k]

    def apply(self, facts: Sequence[FactEdit]) -> Applied:
        t0 = time.perf_counter()
        written = Written(self._new_tag())
        items, seen = [], {}
        for f in facts:
            key = (f.subject.casefold(), f.relation or f.prompt)
            if key in seen and seen[key] != f.target.casefold():
                written.skipped.append(f)
                continue
            seen[key] = f.target.casefold()
            items.append(dict(prompt=f.prompt, target=f.target, subject=f.subject, relation=f.relation))
        try:
            written.results = self.kl.edit_many(items, route=self.route, source=written.tag)
        except KeditError as exc:
            self._drop_passages(written.tag)
            return Applied(tuple(facts), None, str(exc), time.perf_counter() - t0)
        written.ledger_ids = [r.id for r in written.results]
        self._live.append(written)
        self._refresh_store_only()
        error = None
        if written.skipped:
            error = f"{len(written.skipped)} contradictory item(s) left out of the batch: " + "; ".join(
                f"{f.statement}" for f in written.skipped[:5]
            )
        routes = [r.route.value for r in written.results]
        info = {
            "routes": {r: routes.count(r) for r in sorted(set(routes))},
            "weight_edit": next((r.edit_id for r in written.results if r.edit_id), None),
        }
        if len(written.results) == 1:
            info["reasons"] = list(written.results[0].reasons)
        return Applied(tuple(facts), written, error, time.perf_counter() - t0, info)

    def undo(self, applied: Applied) -> None:
        super().undo(applied)
        self._refresh_store_only()

    def routes(self, applied: Applied) -> list[str]:
        """The route the router chose for each item written by `applied`."""
        written = applied.handle
        return [r.route.value for r in written.results] if written is not None else []

    def answer_multihop(
        self, question: str, prompts: MQuAKEPrompts, cot: bool = False, max_new_tokens: int = 24
    ) -> MultiHopAnswer:
        return self._multihop(self.kl.query(question))

    @staticmethod
    def _multihop(ans) -> MultiHopAnswer:
        trace = ans.trace
        raw = json.dumps(
            {
                "mode": trace.get("mode"),
                "hops": [
                    [h["subject"], h["relation"], h["answer"], h["tier"]] for h in trace.get("hops", [])
                ],
                "generated": trace.get("generated"),
            },
            ensure_ascii=False,
        )
        return MultiHopAnswer(ans.text, raw)

    def answer_multihop_many(
        self,
        questions: Sequence[str],
        prompts: MQuAKEPrompts,
        cot: bool = False,
        max_new_tokens: Sequence[int] | None = None,
        stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[MultiHopAnswer]:
        """`KnowledgeLayer.query_many`: the same answers as `query` one by one, the model's work batched.
        The gold-dependent `stop_when` is not used: the layer answers as it would for a user."""
        return [self._multihop(ans) for ans in self.kl.query_many(list(questions))]


def undo_weight_changes(layer) -> None:
    """Undo, newest first, every ledger entry whose weight change is still live (bit-exact restore)."""
    for entry in reversed(layer.history()):
        if entry["edit_id"] and layer.weights.find(entry["edit_id"]):
            layer.undo(entry["id"])
