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
from benchmarks.methods.store import StoreBacked, Written, fact_lines, retrieval_query
from kedit.errors import KeditError
from kedit.scoring import TargetScore, encode_pair, score_targets


class LayerMethod(StoreBacked):
    """kedit's own path: facts go through `KnowledgeLayer.edit_many` (the router picks weights, store or
    both per fact), multi-hop questions through `KnowledgeLayer.query` (graph chains + evidence pool).

    Probes that read the model (KnowEdit scores, MQuAKE cloze/hop probes, fluency) see the edited
    weights and, before them, the stored facts `kl.query` would use for the probe (`kl.scope_facts`: the
    in-scope facts, or the facts walked from them for a question that nests hops), whichever route wrote
    them: a user asking the probe meets the fact recorded beside a weight edit too. Unrelated probes see
    the model alone. Contradictory items of one batch (same subject and relation, another target), which
    `edit_many` refuses as a whole, are left out after the first and reported as the batch's edit error.
    """

    name = "layer"
    include_superseded = False  # the store's own view: a newer fact supersedes an older one
    asks_all_questions = True  # its answers do not depend on the gold: the runner may ask all 3 at once

    def __init__(self, bundle, *, route: str | None = None, k: int | None = None, embedder=None) -> None:
        super().__init__(bundle, k=k, embedder=embedder)
        self.route = route
        self._written: set[tuple[str, int]] = set()  # the live facts and passages this adapter wrote

    def settings(self) -> dict[str, Any]:  # the weight editors too: the layer's defaults may change
        return {
            "k": self.k,
            "route": self.route or "router",
            "edit_method": self.kl.edit_method,
            "batch_method": self.kl.batch_method,
        }

    def _allowed(self, hit) -> bool:
        return (hit.kind, hit.id) in self._written

    def _refresh_written(self) -> None:
        keep: set[tuple[str, int]] = set()
        for written in self._live:
            keep |= {("fact", r.fact_id) for r in written.results if r.fact_id is not None}
            keep |= {("passage", p.id) for p in self._passages_of(written.tag)}
        self._written = keep

    def _reading(self, prompt: str):
        """How `kl.query` reads the probe (`kl.read_scope`), or None when this adapter stored nothing."""
        return self.kl.read_scope(retrieval_query(prompt)) if self._written else None

    def _read_facts(self, reading) -> list[str]:
        """The sentences of the stored facts `kl.query` puts before the model for this reading."""
        if reading is None:
            return []
        found = reading.walked or reading.through or reading.scope.in_scope
        return [c.fact.sentence for c in found if ("fact", c.fact.id) in self._written][: self.k]

    def retrieve(self, query: str, k: int | None = None) -> list[str]:
        """The sentences of the stored facts `kl.query` would use for `query` (`kl.read_scope`: its
        in-scope facts, the facts walked from them, or those holding a value it names), never the top-k
        nearest facts: an unrelated prompt gets no context."""
        found = self._read_facts(self._reading(query))
        return found[: self.k if k is None else k]

    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TargetScore]:
        """Teacher-forced scores as for every method, except that a probe `kl.query` answers by preference
        with an in-scope stored fact (no generation: docs/methods.md §7) is scored on that answer, a probe
        it answers with one of the subjects of the stored facts holding a value the probe names ("Who is the son of
        X?", read through "Y's father is X") is scored on `kl.query`'s answer, a probe asking what a
        place takes from its stored country ("The currency in X") is scored as asked of that country, and
        a probe that reads no stored fact is scored as `kl.query` answers it: with the weight edits of
        stored facts left out (`kl.out_of_scope_weights()`)."""
        scores: list[TargetScore | None] = [None] * len(prompts)
        framed, asked, alone, through = [], [], [], []
        asked_as: dict[int, str] = {}
        for i, prompt in enumerate(prompts):
            reading = self._reading(prompt)
            fact = reading.scope.fact if reading is not None and reading.origin == "scope" else None
            if fact is not None and ("fact", fact.id) in self._written:
                scores[i] = answered_score(self.bundle.tokenizer, prompt, fact.object, targets[i])
                continue
            if reading is not None and reading.origin == "named object" and self._read_facts(reading):
                through.append(i)  # `kl.query`'s answer is one of the facts' subjects: score that answer
                continue
            if (
                reading is not None
                and reading.rewritten
                and ("fact", reading.via[0].fact.id) in self._written
            ):
                asked_as[i] = reading.rewritten  # asked of the place's stored country, closed-book
                alone.append(i)
                continue
            ctx = fact_lines(self._read_facts(reading))
            if ctx:
                framed.append(f"{ctx}Prompt: {prompt}")
                asked.append(i)
            else:
                alone.append(i)
        for i, ans in zip(through, self.kl.query_many([prompts[i] for i in through]) if through else []):
            scores[i] = answered_score(self.bundle.tokenizer, prompts[i], ans.text, targets[i])
        for i, score in zip(asked, score_targets(self.bundle, framed, [targets[i] for i in asked])):
            scores[i] = score
        # nothing stored in scope: `kl.query` asks the model with the stored facts' weight edits left out
        with self.kl.out_of_scope_weights():
            alone_scores = score_targets(
                self.bundle, [asked_as.get(i, prompts[i]) for i in alone], [targets[i] for i in alone]
            )
        for i, score in zip(alone, alone_scores):
            scores[i] = score
        return [s for s in scores if s is not None]

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
        self._refresh_written()
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
        self._refresh_written()

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


def answered_score(tokenizer, prompt: str, answer: str, target: str) -> TargetScore:
    """The teacher-forced score of `target` when the system answers `prompt` with `answer` and nothing
    else: its predicted tokens are the answer's, then end of text. A fixed answer gives its own tokens
    probability 1 and any other 0, so the log-probability is 0 or -inf and a first target token that is
    not the answer's ranks below it (rank 1)."""
    target_full, n_prompt = encode_pair(tokenizer, prompt, target)
    answer_full, n_answer_prompt = encode_pair(tokenizer, prompt, answer)
    want = target_full[n_prompt:]
    said = answer_full[n_answer_prompt:] + [tokenizer.eos_token_id]
    predicted = tuple(said[j] if j < len(said) else tokenizer.eos_token_id for j in range(len(want)))
    hits = sum(p == w for p, w in zip(predicted, want))
    return TargetScore(
        accuracy=hits / len(want),
        logprob=0.0 if hits == len(want) else float("-inf"),
        n_tokens=len(want),
        predicted=predicted,
        target=tuple(want),
        first_token_rank=0 if predicted[0] == want[0] else 1,
    )
