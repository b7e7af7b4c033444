"""What both MQuAKE runners (`mquake`, `mquake_sequential`) write: the prompt check before model work, the
stage clock, a case's `cases.jsonl` line and the run's summary."""

from __future__ import annotations

from typing import Any

from benchmarks.data.cases import MQuAKECase
from benchmarks.data.loaders import BenchmarkDataError, Loaded
from benchmarks.data.prompts import MQuAKEPrompts
from benchmarks.methods.base import Applied, Method
from benchmarks.runners.runs import RunDir, data_label
from benchmarks.scoring.metrics import aggregate_mquake


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


def check_prompts(cases: list[MQuAKECase], prompts: MQuAKEPrompts) -> None:
    """Fail before any model work if a relation of an unedited hop has no 8-shot prompt."""
    for case in cases:
        for hop in case.new_single_hops:
            if not hop.edited and hop.relation_id not in prompts.relations:
                raise BenchmarkDataError(
                    f"case {case.case_id}: rel-prompts.json has no prompt for {hop.relation_id}"
                )


class StageTimes(dict):
    """Wall and process-CPU seconds per stage (`NAME_s`, `NAME_cpu_s`), this invocation only."""

    def add(self, name: str, wall: float, cpu: float) -> None:
        self[f"{name}_s"] = self.get(f"{name}_s", 0.0) + wall
        self[f"{name}_cpu_s"] = self.get(f"{name}_cpu_s", 0.0) + cpu


def case_record(
    case: MQuAKECase,
    batch: int,
    n_facts: int,
    applied: Applied,
    outputs: dict,
    metrics: dict,
    per_case: float,
) -> dict[str, Any]:
    """One `cases.jsonl` line (both runners write exactly this)."""
    return {
        "case_id": case.case_id,
        "index": case.index,
        "batch": batch,
        "batch_facts": n_facts,
        "inputs": _inputs(case),
        "outputs": outputs,
        "metrics": metrics,
        "edit_error": applied.error,
        "edit_info": applied.info,
        "edit_seconds": round(applied.seconds, 3),
        "eval_seconds": round(per_case, 3),  # the chunk's probing time, shared out
    }


def write_summary(
    run: RunDir,
    method: Method,
    loaded: Loaded[MQuAKECase],
    scored: list[MQuAKECase],
    k: int,
    n_batches: int,
    n_cases_edited: int,
    stages: StageTimes,
    complete: bool,
) -> dict[str, Any]:
    """The run's summary from the cases recorded so far (both runners)."""
    records = [run.finished[c.case_id] for c in scored if c.case_id in run.finished]
    return run.write_summary(
        aggregate_mquake([r["metrics"] for r in records]),
        n_cases=len(records),
        malformed=loaded.malformed,
        extra={
            "method_settings": method.settings(),  # e.g. the layer's weight editors
            "files": [data_label(f) for f in loaded.files],
            "n_records": loaded.n_records,
            "edits_per_batch": k,
            "n_batches": n_batches,
            "n_conflicted": sum(1 for r in records if r["metrics"].get("conflicted")),
            "n_edit_errors": sum(1 for r in records if r.get("edit_error")),
            "n_requested": len(scored),
            "n_cases_edited": n_cases_edited,  # cases whose edits were applied (all of each batch)
            "stages": {name: round(v, 2) for name, v in stages.items()},  # this invocation only
        },
        complete=complete and len(records) == len(scored),
    )
