"""Bootstrap intervals of the summary metrics, the combined KnowEdit column, and how `compare` marks runs
whose intervals overlap (no model)."""

from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmarks.runners.compare import SIMILAR, knowedit_table, load_summaries, write_report
from benchmarks.runners.runs import CASES, RunDir, RunSpec
from benchmarks.scoring.intervals import N_RESAMPLES, SEED, bootstrap_intervals, overlap
from benchmarks.scoring.summary import combined, metric_intervals, summary_metrics


def test_interval_of_a_mean_is_scipys_percentile_bootstrap_of_the_vector():
    x = np.array([1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.25, 1.0, 0.75, 1.0, 0.0])
    ours = bootstrap_intervals(
        [{"v": v} for v in x], lambda rs: {"mean": float(np.mean([r["v"] for r in rs]))}
    )
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(SEED)
    ).confidence_interval
    assert ours["mean"] == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert ours["mean"][0] < x.mean() < ours["mean"][1]
    # the same records give the same interval (fixed seed); one record gives none
    assert (
        bootstrap_intervals([{"v": v} for v in x], lambda rs: {"mean": float(np.mean([r["v"] for r in rs]))})
        == ours
    )
    assert bootstrap_intervals([{"v": 1.0}], lambda rs: {"mean": 1.0}) == {}


def test_interval_of_a_metric_some_resamples_lack_uses_the_others():
    # portability is in 2 of 8 cases: a resample may hold neither, and is then left out for that metric
    records = [
        {"metrics": {"rewrite_acc": float(i % 2), "locality": {"N": [1.0]}}, "pre": {"rewrite_acc": 0.0}}
        for i in range(8)
    ]
    records[0]["metrics"]["portability"] = {"R": [0.0]}
    records[1]["metrics"]["portability"] = {"R": [1.0]}
    found = metric_intervals("knowedit", records)
    assert found["portability"] == (0.0, 1.0)
    assert found["locality"] == (1.0, 1.0)  # constant over cases: an exact interval
    lo, hi = found["edit_succ"]
    assert lo < 0.5 < hi and 0.0 <= lo and hi <= 1.0


def test_combined_is_the_mean_of_edit_success_rephrase_and_locality():
    rec = {
        "metrics": {"rewrite_acc": 1.0, "rephrase_acc": [0.5, 0.0], "locality": {"N": [0.5, 1.0]}},
        "pre": {"rewrite_acc": 0.0},
    }
    m = summary_metrics("knowedit", [rec])
    assert m["combined"] == pytest.approx((1.0 + 0.25 + 0.75) / 3)
    assert combined({"edit_succ": 1.0, "rephrase": 0.5}) is None  # no locality: no combined value
    assert "combined" not in summary_metrics(
        "mquake", [{"metrics": {"edit_recalled": [True], "hops": [], "multi_hop": True}}]
    )


def _run(
    root: Path, name: str, rewrite: list[float], *, cases_file: bool = True, intervals: bool = True
) -> Path:
    """A finished KnowEdit run directory whose cases have the given rewrite accuracies."""
    spec = RunSpec("knowedit", "ZsRE", name, "smollm2-135m", {"kind": "zsre"})
    run = RunDir(root / name, spec)
    records = [
        {
            "case_id": f"c{i}",
            "metrics": {"rewrite_acc": v, "rephrase_acc": [v], "locality": {"N": [1.0]}},
            "pre": {"rewrite_acc": 0.0},
        }
        for i, v in enumerate(rewrite)
    ]
    for rec in records:
        run.record(rec)
    run.write_summary(summary_metrics("knowedit", records), len(records), [], {"kind": "zsre"})
    summary = json.loads((run.path / "summary.json").read_text())
    if not intervals:  # a run written before intervals were recorded
        summary.pop("intervals")
        summary["metrics"].pop("combined")
        (run.path / "summary.json").write_text(json.dumps(summary))
    if not cases_file:
        (run.path / CASES).unlink()
    return run.path


def test_compare_bolds_the_best_and_marks_overlapping_intervals(tmp_path):
    best = _run(tmp_path, "rome", [1.0] * 9 + [0.8])
    close = _run(
        tmp_path, "memit", [1.0] * 7 + [0.8, 0.6, 1.0], intervals=False
    )  # recomputed from cases.jsonl
    far = _run(tmp_path, "rag", [0.0] * 9 + [0.2])
    bare = _run(tmp_path, "none", [0.5, 0.5], intervals=False, cases_file=False)  # nothing to compute from

    summaries = load_summaries([best, close, far, bare])
    assert summaries[1]["intervals"]["edit_succ"] == pytest.approx(
        metric_intervals("knowedit", [json.loads(line) for line in (close / CASES).read_text().splitlines()])[
            "edit_succ"
        ]
    )
    assert summaries[1]["metrics"]["combined"] == pytest.approx((0.94 + 0.94 + 1.0) / 3)
    assert "intervals" not in summaries[3]
    rows = {line.split(" | ")[2]: line.split(" | ") for line in knowedit_table(summaries)[2:]}
    edit_succ = 4  # data, model, method, n, then Edit Succ
    lo, hi = summaries[0]["intervals"]["edit_succ"]
    assert rows["rome"][edit_succ] == f"**98.00** [{100 * lo:.1f}, {100 * hi:.1f}]"
    assert overlap(summaries[1]["intervals"]["edit_succ"], summaries[0]["intervals"]["edit_succ"])
    assert rows["memit"][edit_succ].endswith(f"] {SIMILAR}")
    assert not overlap(summaries[2]["intervals"]["edit_succ"], summaries[0]["intervals"]["edit_succ"])
    assert "[" in rows["rag"][edit_succ] and SIMILAR not in rows["rag"][edit_succ]
    assert rows["none"][edit_succ] == "50.00"  # no interval: the value alone, never marked

    report = write_report([best, close, far, bare], tmp_path / "report.md")[0].read_text()
    assert "| Combined |" in report and "95 % interval" in report


@pytest.mark.parametrize(
    "name",
    [
        "benchmarks.scoring.intervals",
        "benchmarks.scoring.summary",
        "benchmarks.scoring.answers",
        "benchmarks.runners.runs",
        "benchmarks.methods.registry",
        "benchmarks.studies",
        "benchmarks.data.counterfact",
    ],
)
def test_docstring_examples_of_the_benchmark_modules_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
