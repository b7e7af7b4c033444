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
from benchmarks.data.loaders import Loaded
from benchmarks.data.prompts import MQuAKEPrompts
from benchmarks.methods.base import Applied, Method
from benchmarks.runners.mquake import MQuAKESettings, _Prober, batch_facts, batches
from benchmarks.runners.mquake_records import StageTimes, case_record, check_prompts, write_summary
from benchmarks.runners.runs import RunDir, progress_bar


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
    check_prompts(cases, prompts)
    k = settings.batch_size(len(cases))
    all_batches = batches(cases, k)
    scored = [c for batch in all_batches for c in settings.probed(batch)]
    _, conflicted = batch_facts(cases)  # every edit is live when any case is probed
    prober = _Prober(method, prompts, settings.cot)
    stages = StageTimes()
    add = stages.add
    applied: list[tuple[int, Applied, int]] = []  # (batch, what apply did, facts written)
    complete = False

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
        with progress_bar(
            f"evaluate · {method.name}", len(scored), len(scored) - len(todo), console
        ) as advance:
            for chunk in batches(todo, method.record_every or max(1, len(todo))):
                w0 = time.perf_counter()
                results, probe_stages = prober.cases(chunk, conflicted)
                for name in ("single_hop", "multi_hop"):
                    add(name, probe_stages[f"{name}_s"], probe_stages[f"{name}_cpu_s"])
                per_case = (time.perf_counter() - w0) / len(chunk)
                for case, (metrics, outputs) in zip(chunk, results):
                    b = batch_of[case.case_id]
                    done, n_facts = by_batch[b]
                    run.record(case_record(case, b, n_facts, done, outputs, metrics, per_case))
                    advance()
        complete = True
    finally:
        w0, c0 = time.perf_counter(), time.process_time()
        for _, done, _ in reversed(applied):
            method.undo(done)
        add("undo", time.perf_counter() - w0, time.process_time() - c0)
        summary = write_summary(
            run, method, loaded, scored, k, len(all_batches), len(cases), stages, complete
        )
    return summary
