"""What a KnowEdit case is scored on, shared by both harnesses (the legacy one in `knowedit`, the batched
one in `knowedit_batched`): the run settings, a case's probes, its `cases.jsonl` record, stage timing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.data.cases import EditCase
from benchmarks.methods.base import Applied, Method
from benchmarks.scoring.metrics import ngram_entropy, token_accuracy, token_agreement
from kedit.scoring import TargetScore


@dataclass(frozen=True)
class KnowEditSettings:
    """Run settings recorded in `run.json` / `summary.json`."""

    kind: str
    sequential: bool = False
    sadr: bool = False
    fluency: bool = True
    seed: int = 0
    limit: int | None = None


@dataclass(frozen=True)
class Probe:
    section: str  # rewrite | rephrase | portability | locality
    key: str
    prompt: str
    target: str


def case_probes(case: EditCase) -> list[Probe]:
    out = [Probe("rewrite", "", case.prompt, case.target_new)]
    out += [Probe("rephrase", "", p, case.target_new) for p in case.rephrase]
    for key, items in case.portability.items():
        out += [Probe("portability", key, qa.prompt, qa.answer) for qa in items]
    for key, items in case.locality.items():
        out += [Probe("locality", key, qa.prompt, qa.answer) for qa in items]
    return out


def score_probes(method: Method, probes: list[Probe]) -> list[TargetScore]:
    return method.score([p.prompt for p in probes], [p.target for p in probes])


def accuracies(
    probes: list[Probe], scores: list[TargetScore], pre: list[TargetScore] | None
) -> dict[str, Any]:
    """Per-case metric dict in EasyEdit's shape; locality needs the pre-edit scores."""
    out: dict[str, Any] = {"portability": {}, "locality": {}}
    for probe, s, i in zip(probes, scores, range(len(probes))):
        if probe.section == "rewrite":
            out["rewrite_acc"] = token_accuracy(s.predicted, s.target)
        elif probe.section == "rephrase":
            out.setdefault("rephrase_acc", []).append(token_accuracy(s.predicted, s.target))
        elif probe.section == "portability":
            out["portability"].setdefault(probe.key, []).append(token_accuracy(s.predicted, s.target))
        elif pre is not None:
            out["locality"].setdefault(probe.key, []).append(token_agreement(pre[i].predicted, s.predicted))
    if pre is None:
        del out["locality"]
    return out


def case_inputs(case: EditCase) -> dict[str, Any]:
    return {
        "prompt": case.prompt,
        "subject": case.subject,
        "target_new": case.target_new,
        "ground_truth": list(case.ground_truth),
        "rephrase": list(case.rephrase),
        "portability": {k: [[qa.prompt, list(qa.answers)] for qa in v] for k, v in case.portability.items()},
        "locality": {k: [[qa.prompt, list(qa.answers)] for qa in v] for k, v in case.locality.items()},
    }


def case_record(
    case: EditCase,
    probes: list[Probe],
    pre: list[TargetScore],
    post: list[TargetScore],
    text: str | None,
    applied: Applied,
    eval_seconds: float,
    tok,
) -> dict[str, Any]:
    """One `cases.jsonl` line from the scores of a case (both harnesses write exactly this)."""
    metrics = accuracies(probes, post, pre)
    outputs: dict[str, Any] = {"rewrite_predicted": tok.decode(list(post[0].predicted))}
    if text is not None:
        metrics["fluency"] = ngram_entropy(text)
        outputs["fluency_text"] = text
    return {
        "case_id": case.case_id,
        "index": case.index,
        "source": case.source,
        "inputs": case_inputs(case),
        "outputs": outputs,
        "pre": accuracies(probes, pre, None),
        "metrics": metrics,
        "edit_error": applied.error,
        "edit_info": applied.info,
        "edit_seconds": round(applied.seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
    }


class Stages:
    """Wall seconds (`NAME_s`) and process CPU seconds (`NAME_cpu_s`: less inflated by other jobs' load)
    per stage of a run (pre, edit, score, fluency, undo), this invocation only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._cpu_mark = time.process_time()

    def add(self, name: str, t0: float) -> float:
        """Add the wall time since `t0` to `name`, and the CPU time since the previous `add` (the stages
        follow each other: what runs between two of them, e.g. writing a case line, goes to the next);
        returns now."""
        now, cpu = time.perf_counter(), time.process_time()
        self.seconds[f"{name}_s"] = self.seconds.get(f"{name}_s", 0.0) + now - t0
        self.seconds[f"{name}_cpu_s"] = self.seconds.get(f"{name}_cpu_s", 0.0) + cpu - self._cpu_mark
        self._cpu_mark = cpu
        return now

    @property
    def wall(self) -> dict[str, float]:
        return {k: v for k, v in self.seconds.items() if not k.endswith("_cpu_s")}
