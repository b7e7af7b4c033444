"""Sequential MQuAKE: the cases' edits applied one batch after another with nothing undone in between, then
every case probed on the final model (all edits live), then every edit undone, newest first.

This is the sequential-editing setting (EasyEdit's `sequential_edit`, the "N edits, one after another" rows
of the editing papers): with `--edits-per-batch 1` each case's edits are one `apply` call, so a weight
editor stacks N separate updates where `--edits-per-batch all` makes one batch of them. Probes, metrics and
the run directory are those of `benchmarks.runners.mquake`; a case counts as conflicted when any edit of the
whole run contradicts its new chain (all are live when it is probed). A resumed run re-applies every edit
(the state is the whole sequence) and probes the cases not yet recorded.

>>> summary = run_mquake_sequential(method, loaded, run, MQuAKESettings("1"), prompts)   # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from benchmarks.data.cases import MQuAKECase
from benchmarks.data.loaders import BenchmarkDataError, Loaded
from benchmarks.data.prompts import MQuAKEPrompts
from benchmarks.methods.base import Applied, Method
from benchmarks.runners.mquake import MQuAKESettings, _inputs, _Prober, batch_facts, batches
from benchmarks.runners.runs import RunDir, data_label, progress_bar
from benchmarks.scoring.metrics import aggregate_mquake


def run_mquake_sequential(
    method: Method,
    loaded: Loaded[MQuAKECase],
    run: RunDir,
    settings: MQuAKESettings,
    prompts: MQuAKEPrompts,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run (or resume) sequential MQuAKE over `loaded.cases`; returns the summary written to `run`."""
    cases = loaded.cases
    for case in cases:  # fail before any model work if a relation has no 8-shot prompt
        for hop in case.new_single_hops:
            if not hop.edited and hop.relation_id not in prompts.relations:
                raise BenchmarkDataError(f"case {case.case_id}: rel-prompts.json has no prompt for {hop.relation_id}")
    k = settings.batch_size(len(cases))
    all_batches = batches(cases, k)
    scored = [c for batch in all_batches for c in settings.probed(batch)]
    _, conflicted = batch_facts(cases)  # every edit is live when any case is probed
    prober = _Prober(method, prompts, settings.cot)
    stages: dict[str, float] = {}
    applied: list[tuple[int, Applied, int]] = []  # (batch, what apply did, facts written)
    complete = False

    def add(name: str, wall: float, cpu: float) -> None:
        stages[f"{name}_s"] = stages.get(f"{name}_s", 0.0) + wall
        stages[f"{name}_cpu_s"] = stages.get(f"{name}_cpu_s", 0.0) + cpu

    try:
        todo = [c for c in scored if c.case_id not in run.finished]
        if todo:
            with progress_bar(f"sequential edits · {method.name}", len(all_batches), 0, console) as advance:
                for b, batch in enumerate(all_batches):
                    facts, _ = batch_facts(batch)
                    w0, c0 = time.perf_counter(), time.process_time()
                    applied.append((b, method.apply(facts), len(facts)))
                    add("apply", time.perf_counter() - w0, time.process_time() - c0)
                    advance()
        batch_of = {c.case_id: b for b, batch in enumerate(all_batches) for c in batch}
        by_batch = {b: (a, n) for b, a, n in applied}
        with progress_bar(f"evaluate · {method.name}", len(scored), len(scored) - len(todo), console) as advance:
            for chunk in batches(todo, method.record_every or max(1, len(todo))):
                w0 = time.perf_counter()
                results, probe_stages = prober.cases(chunk, conflicted)
                for name in ("single_hop", "multi_hop"):
                    add(name, probe_stages[f"{name}_s"], probe_stages[f"{name}_cpu_s"])
                per_case = (time.perf_counter() - w0) / len(chunk)
                for case, (metrics, outputs) in zip(chunk, results):
                    b = batch_of[case.case_id]
                    done, n_facts = by_batch[b]
                    run.record({
                        "case_id": case.case_id, "index": case.index, "batch": b, "batch_facts": n_facts,
                        "inputs": _inputs(case), "outputs": outputs, "metrics": metrics,
                        "edit_error": done.error, "edit_info": done.info,
                        "edit_seconds": round(done.seconds, 3), "eval_seconds": round(per_case, 3),
                    })
                    advance()
        complete = True
    finally:
        w0, c0 = time.perf_counter(), time.process_time()
        for _, done, _ in reversed(applied):
            method.undo(done)
        add("undo", time.perf_counter() - w0, time.process_time() - c0)
        records = [run.finished[c.case_id] for c in scored if c.case_id in run.finished]
        summary = run.write_summary(
            aggregate_mquake([r["metrics"] for r in records]),
            n_cases=len(records),
            malformed=loaded.malformed,
            extra={
                "method_settings": method.settings(),
                "files": [data_label(f) for f in loaded.files],
                "n_records": loaded.n_records,
                "edits_per_batch": k,
                "n_batches": len(all_batches),
                "n_conflicted": sum(1 for r in records if r["metrics"].get("conflicted")),
                "n_edit_errors": sum(1 for r in records if r.get("edit_error")),
                "n_requested": len(scored),
                "n_cases_edited": len(cases),
                "stages": {name: round(v, 2) for name, v in stages.items()},  # this invocation only
            },
            complete=complete and len(records) == len(scored),
        )
    return summary
