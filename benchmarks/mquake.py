"""MQuAKE runner: apply the edits of k cases together, then probe each of those cases.

Protocol (princeton-nlp/MQuAKE README; MQuAKE-Remastered):
- cases are taken in file order in batches of k (1, 100, or all of the cases run); the batch's requested
  edits (duplicates once) are applied together, probed, and undone before the next batch;
- edit-wise: each requested edit's cloze (`prompt.format(subject)`, no in-context demos) is completed
  greedily; recalled if the continuation starts with target_new or an alias of that hop;
- hops of the new chain: an edited hop is probed by its cloze as above; an unedited hop by its question
  with the relation's 8-shot prompt (`rel-prompts.json`), answer = text up to the newline, exact match
  (case-insensitive) with the answer or an alias. `edited_hop_recall` / `unedited_hop_recall` pool these;
  `instance_wise` = every hop of the chain recalled;
- multi-hop: each question is asked with the official few-shot prompt (standard, or CoT with `cot=True`)
  through `Method.answer_multihop`; a case is correct as soon as one of its 3 questions gives new_answer
  or an alias (case-insensitive exact match).
- a case is `conflicted` when another edit of its batch rewrites a (subject, relation) of its new chain
  to another object (MQuAKE-Remastered's contamination); `multi_hop_unconflicted` leaves those out.

>>> summary = run_mquake(method, load_mquake(path), RunDir(out, spec), MQuAKESettings("100"), load_mquake_prompts())  # doctest: +SKIP
>>> sorted(summary["metrics"])[:3]                                                                               # doctest: +SKIP
['edit_wise', 'edited_hop_recall', 'instance_wise']
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from benchmarks.cases import Fact, Hop, MQuAKECase
from benchmarks.loaders import BenchmarkDataError, Loaded
from benchmarks.methods import Applied, Method
from benchmarks.metrics import aggregate_mquake, answer_matches, cloze_recalled, first_line_answer
from benchmarks.prompts import MQuAKEPrompts
from benchmarks.runs import RunDir, progress_bar


def answer_budget(tokenizer, candidates: tuple[str, ...]) -> int:
    """New tokens enough to state any candidate answer: twice its longest tokenisation (case and
    context change the split) plus 2. Past that, a continuation cannot equal a candidate (exact match)
    nor begin with it (cloze), so generating further cannot change the verdict."""
    longest = max(len(tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for c in candidates if c)
    return 2 * longest + 2


@dataclass(frozen=True)
class MQuAKESettings:
    """Run settings recorded in `run.json` / `summary.json`."""

    edits_per_batch: str  # "1", "100", "all" or any positive integer
    cot: bool = False
    limit: int | None = None

    def batch_size(self, n_cases: int) -> int:
        if self.edits_per_batch == "all":
            return max(1, n_cases)
        try:
            k = int(self.edits_per_batch)
        except ValueError:
            k = 0
        if k < 1:
            raise BenchmarkDataError(f"--edits-per-batch must be a positive integer or 'all', not '{self.edits_per_batch}'")
        return k


def batches(cases: list[MQuAKECase], k: int) -> list[list[MQuAKECase]]:
    """Consecutive batches of k cases (the last may be shorter)."""
    return [cases[i : i + k] for i in range(0, len(cases), k)]


def batch_facts(batch: list[MQuAKECase]) -> tuple[list[Fact], set[str]]:
    """The batch's distinct facts to write, and the ids of cases whose new chain another edit contradicts."""
    facts: list[Fact] = []
    for case in batch:
        for f in case.facts:
            if f not in facts:
                facts.append(f)
    edits = {(s, r, o) for case in batch for (s, r, o) in case.edit_triples}
    conflicted = {
        case.case_id
        for case in batch
        if any((s, r) == (es, er) and o != eo for (s, r, o) in case.new_triples for (es, er, eo) in edits)
    }
    return facts, conflicted


class _Prober:
    def __init__(self, method: Method, prompts: MQuAKEPrompts, cot: bool) -> None:
        self.method, self.prompts, self.cot = method, prompts, cot

    def budget(self, answer: str, aliases: tuple[str, ...]) -> int:
        return answer_budget(self.method.bundle.tokenizer, (answer, *aliases))

    def cloze(self, cloze: str, answer: str, aliases: tuple[str, ...]) -> dict[str, Any]:
        text = self.method.generate(cloze, self.budget(answer, aliases), stop=("\n",))
        return {"probe": "cloze", "prompt": cloze, "output": text, "recalled": cloze_recalled(text, answer, aliases)}

    def question(self, hop: Hop) -> dict[str, Any]:
        query = self.prompts.relation_query(hop.relation_id, hop.question)
        text = self.method.generate(query, self.budget(hop.answer, hop.aliases), stop=("\n",))
        answer = first_line_answer(text)
        return {
            "probe": "question",
            "prompt": hop.question,
            "output": answer,
            "recalled": answer_matches(answer, hop.answer, hop.aliases),
        }

    def case(self, case: MQuAKECase, conflicted: bool) -> dict[str, Any]:
        cloze_cache: dict[str, dict[str, Any]] = {}

        def cloze(text: str, answer: str, aliases: tuple[str, ...]) -> dict[str, Any]:
            if text not in cloze_cache:
                cloze_cache[text] = self.cloze(text, answer, aliases)
            return cloze_cache[text]

        edit_probes = []
        for rw in case.requested_rewrite:
            hop = next((h for h in case.new_single_hops if h.edited and h.answer == rw.target_new), None)
            edit_probes.append(cloze(rw.cloze, rw.target_new, hop.aliases if hop else ()))
        hops = []
        for hop in case.new_single_hops:
            probe = cloze(hop.cloze, hop.answer, hop.aliases) if hop.edited else self.question(hop)
            hops.append({"edited": hop.edited, "relation": hop.relation_id, "answer": hop.answer, **probe})
        answers = []
        correct = False
        budget = self.budget(case.new_answer, case.new_answer_alias)
        for q in case.questions:
            got = self.method.answer_multihop(q, self.prompts, cot=self.cot, max_new_tokens=budget)
            ok = answer_matches(got.answer, case.new_answer, case.new_answer_alias)
            answers.append({"question": q, "answer": got.answer, "raw": got.raw, "correct": ok})
            if ok:
                correct = True
                break  # MQuAKE: a case counts if any of its questions is answered right
        return {
            "edit_recalled": [p["recalled"] for p in edit_probes],
            "hops": [{"edited": h["edited"], "recalled": h["recalled"]} for h in hops],
            "multi_hop": correct,
            "conflicted": conflicted,
        }, {"edit_probes": edit_probes, "hop_probes": hops, "multi_hop_answers": answers}


def _inputs(case: MQuAKECase) -> dict[str, Any]:
    return {
        "requested_rewrite": [
            {"cloze": r.cloze, "subject": r.subject, "target_new": r.target_new, "target_true": r.target_true}
            for r in case.requested_rewrite
        ],
        "questions": list(case.questions),
        "new_answer": case.new_answer,
        "new_answer_alias": list(case.new_answer_alias),
        "new_triples_labeled": [list(t) for t in case.new_triples_labeled],
    }


def run_mquake(
    method: Method,
    loaded: Loaded[MQuAKECase],
    run: RunDir,
    settings: MQuAKESettings,
    prompts: MQuAKEPrompts,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run (or resume) MQuAKE over `loaded.cases`; returns the summary written to `run`."""
    cases = loaded.cases
    for case in cases:  # fail before any model work if a relation has no 8-shot prompt
        for hop in case.new_single_hops:
            if not hop.edited and hop.relation_id not in prompts.relations:
                raise BenchmarkDataError(f"case {case.case_id}: rel-prompts.json has no prompt for {hop.relation_id}")
    k = settings.batch_size(len(cases))
    prober = _Prober(method, prompts, settings.cot)
    done = sum(1 for c in cases if c.case_id in run.finished)
    complete = False
    try:
        with progress_bar(f"mquake k={settings.edits_per_batch} · {method.name}", len(cases), done, console) as advance:
            for b, batch in enumerate(batches(cases, k)):
                todo = [c for c in batch if c.case_id not in run.finished]
                if not todo:
                    continue
                facts, conflicted = batch_facts(batch)
                applied: Applied = method.apply(facts)
                try:
                    for case in todo:
                        t0 = time.perf_counter()
                        metrics, outputs = prober.case(case, case.case_id in conflicted)
                        run.record(
                            {
                                "case_id": case.case_id,
                                "index": case.index,
                                "batch": b,
                                "batch_facts": len(facts),
                                "inputs": _inputs(case),
                                "outputs": outputs,
                                "metrics": metrics,
                                "edit_error": applied.error,
                                "edit_info": applied.info,
                                "edit_seconds": round(applied.seconds, 3),
                                "eval_seconds": round(time.perf_counter() - t0, 3),
                            }
                        )
                        advance()
                finally:
                    method.undo(applied)
        complete = True
    finally:
        records = [run.finished[c.case_id] for c in cases if c.case_id in run.finished]
        summary = run.write_summary(
            aggregate_mquake([r["metrics"] for r in records]),
            n_cases=len(records),
            malformed=loaded.malformed,
            extra={
                "files": loaded.files,
                "n_records": loaded.n_records,
                "edits_per_batch": k,
                "n_batches": len(batches(cases, k)),
                "n_conflicted": sum(1 for r in records if r["metrics"].get("conflicted")),
                "n_edit_errors": sum(1 for r in records if r.get("edit_error")),
                "n_requested": len(cases),
            },
            complete=complete and len(records) == len(cases),
        )
    return summary
