"""KnowEdit runner: edit each case, score it as EasyEdit does, write one line per case and a summary.

Protocol (EasyEdit `BaseEditor.edit` + `compute_edit_quality`):
- before the edit, the locality probes (`prompt + " " + answer`) are scored teacher-forced on the unedited
  model, keeping the argmax tokens (plus pre-edit rewrite/rephrase/portability accuracy, reported as `pre_*`);
- non-sequential: apply the case's edit, score rewrite (target_new), rephrase (target_new), portability
  (first alias of each probe), locality (argmax tokens vs the pre-edit ones), sample the fluency text from
  the edit prompt, then undo the edit before the next case;
- sequential (EasyEdit `sequential_edit=True`): pre-edit scores of every case first, then all edits applied
  one after another, then every case evaluated on the final model, then all edits undone.

Two harnesses give these numbers: "batched" (default; `benchmarks.runners.knowedit_batched`: pre-edit scores cached
across methods and runs, the fluency samples of several cases decoded together) and "legacy" (the case-by-
case loop below, kept so that `benchmarks/studies/harness_speed.py` can compare them). `shard` runs a slice of the
cases (`benchmarks.runners.shards`). The summary's `stages` holds the wall and process CPU seconds of pre, edit, score, fluency, undo.

>>> from benchmarks.data.loaders import load_knowedit                      # doctest: +SKIP
>>> summary = run_knowedit(method, load_knowedit(path), RunDir(out, spec), KnowEditSettings("zsre"))  # doctest: +SKIP
>>> summary["metrics"]["edit_succ"]                                   # doctest: +SKIP
0.97
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from benchmarks.data.cases import EditCase
from benchmarks.data.loaders import BenchmarkDataError, Loaded
from benchmarks.methods.base import Applied, Method
from benchmarks.runners.knowedit_probes import (
    KnowEditSettings,
    Probe,
    Stages,
    case_probes,
    case_record,
    score_probes,
)
from benchmarks.runners.pre_cache import PreScoreCache
from benchmarks.runners.runs import RunDir, data_label, progress_bar
from benchmarks.runners.shards import Shard, ShardSpecError
from benchmarks.scoring.summary import knowedit_metrics
from kedit.scoring import TargetScore


class _Evaluator:
    """The legacy harness: each case scored on its own (pre, post), its fluency sample decoded alone."""

    def __init__(self, method: Method, settings: KnowEditSettings, stages: Stages | None = None) -> None:
        self.method = method
        self.settings = settings
        self.tok = method.bundle.tokenizer
        self.stages = stages or Stages()

    def pre(self, case: EditCase) -> tuple[list[Probe], list[TargetScore]]:
        t0 = time.perf_counter()
        probes = case_probes(case)
        scores = score_probes(self.method, probes)
        self.stages.add("pre", t0)
        return probes, scores

    def post(
        self, case: EditCase, probes: list[Probe], pre: list[TargetScore], applied: Applied
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        post = score_probes(self.method, probes)
        t1 = self.stages.add("score", t0)
        text = None
        if self.settings.fluency:
            text = self.method.sample(case.prompt, seed=self.settings.seed + case.index)
            self.stages.add("fluency", t1)
        return case_record(case, probes, pre, post, text, applied, time.perf_counter() - t0, self.tok)


def summarize_knowedit(records: list[dict]) -> dict[str, float]:
    """Summary metrics of finished case records: EasyEdit's post metrics, `combined`, `pre_*`
    (`benchmarks.scoring.summary.knowedit_metrics`)."""
    return knowedit_metrics(records)


HARNESSES = ("batched", "legacy")


def run_knowedit(
    method: Method,
    loaded: Loaded[EditCase],
    run: RunDir,
    settings: KnowEditSettings,
    console: Console | None = None,
    *,
    harness: str = "batched",
    cache: PreScoreCache | None = None,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """Run (or resume) KnowEdit over `loaded.cases` (the `shard`'s share of them, if given); returns the
    summary written to `run`. `harness`: "batched" (pre-edit scores batched and cached in `cache`, the
    fluency samples of several edits decoded together, `benchmarks.runners.knowedit_batched`) or "legacy" (case
    by case); both give the same numbers."""
    if harness not in HARNESSES:
        raise BenchmarkDataError(f"--harness must be one of {', '.join(HARNESSES)}, not '{harness}'")
    if shard is not None and settings.sequential and shard.count > 1:
        raise ShardSpecError("--shard cannot split a --sequential run: its edits accumulate over every case")
    cases = shard.select(loaded.cases) if shard is not None else loaded.cases
    pending = [c for c in cases if c.case_id not in run.finished]
    stages = Stages()
    evaluator = _Evaluator(method, settings, stages)
    complete = False
    cached: dict[str, int] = {}
    try:
        if harness == "batched":
            from benchmarks.runners.knowedit_batched import run_batched

            cached = run_batched(method, cases, pending, run, settings, stages, cache, console)
        elif settings.sequential:
            _run_sequential(method, cases, pending, run, evaluator, console)
        else:
            with progress_bar(
                f"knowedit {loaded.kind} · {method.name}", len(cases), len(cases) - len(pending), console
            ) as advance:
                for case in pending:
                    probes, pre = evaluator.pre(case)
                    t0 = time.perf_counter()
                    applied = method.apply([case.fact])
                    stages.add("edit", t0)
                    try:
                        run.record(evaluator.post(case, probes, pre, applied))
                    finally:
                        t0 = time.perf_counter()
                        method.undo(applied)
                        stages.add("undo", t0)
                    advance()
        complete = True
    finally:
        records = [run.finished[c.case_id] for c in cases if c.case_id in run.finished]
        summary = run.write_summary(
            summarize_knowedit(records),
            n_cases=len(records),
            malformed=loaded.malformed,
            extra={
                "method_settings": method.settings(),  # e.g. the layer's weight editors
                "kind": loaded.kind,
                "files": [data_label(f) for f in loaded.files],
                "n_records": loaded.n_records,
                "n_edit_errors": sum(1 for r in records if r.get("edit_error")),
                "n_requested": len(cases),
                "harness": harness,
                **(
                    {"pre_cache": cached} if cached else {}
                ),  # cases whose pre-edit scores were cached / scored
                "stages": {name: round(v, 2) for name, v in stages.seconds.items()},  # this invocation only
            },
            complete=complete and len(records) == len(cases),
        )
        if console is not None and stages.seconds:
            console.print(
                "stages (wall s / process CPU s): "
                + ", ".join(
                    f"{n[:-2]} {v:.1f}/{stages.seconds[n[:-2] + '_cpu_s']:.1f}"
                    for n, v in stages.wall.items()
                )
            )
    return summary


def _run_sequential(
    method: Method,
    cases: list[EditCase],
    pending: list[EditCase],
    run: RunDir,
    evaluator: _Evaluator,
    console: Console | None,
) -> None:
    """EasyEdit sequential editing; a resumed run re-applies every edit (the state is the whole sequence)."""
    if not pending:
        return
    pre = {c.case_id: evaluator.pre(c) for c in pending}
    applied: list[Applied] = []
    try:
        with progress_bar(f"sequential edits · {method.name}", len(cases), 0, console) as advance:
            for case in cases:
                t0 = time.perf_counter()
                applied.append(method.apply([case.fact]))
                evaluator.stages.add("edit", t0)
                advance()
        by_id = {a_case.case_id: a for a_case, a in zip(cases, applied)}
        with progress_bar("evaluate", len(cases), len(cases) - len(pending), console) as advance:
            for case in pending:
                probes, pre_scores = pre[case.case_id]
                run.record(evaluator.post(case, probes, pre_scores, by_id[case.case_id]))
                advance()
    finally:
        for a in reversed(applied):
            method.undo(a)
