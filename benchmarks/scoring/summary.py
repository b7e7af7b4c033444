"""A run's summary metrics from its case records (as `cases.jsonl` holds them), for each benchmark, with
their bootstrap intervals; the runners, `merge` and `compare` all compute them here.

KnowEdit adds `combined`: the mean of Edit Succ, Rephrase (generalisation) and Locality, the three
quantities every KnowEdit method is judged on (left out when one of them is missing).

>>> summary_metrics("knowedit", [{"metrics": {"rewrite_acc": 1.0, "rephrase_acc": [0.5], "locality": {"N": [1.0]}},
...                               "pre": {"rewrite_acc": 0.0}}])
{'edit_succ': 1.0, 'rephrase': 0.5, 'locality': 1.0, 'locality.N': 1.0, 'combined': 0.8333333333333334, 'pre_edit_succ': 0.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.scoring.intervals import Interval, bootstrap_intervals
from benchmarks.scoring.metrics import aggregate_knowedit, aggregate_mquake
from kedit.errors import KeditError

COMBINED_OF = ("edit_succ", "rephrase", "locality")
BENCHMARKS = ("knowedit", "mquake")


class UnknownBenchmarkError(KeditError):
    """Summary metrics asked for a benchmark other than knowedit and mquake."""


def combined(metrics: Mapping[str, float | None]) -> float | None:
    """Mean of Edit Succ, Rephrase and Locality; None unless all three are there."""
    values = [metrics.get(k) for k in COMBINED_OF]
    return None if any(v is None for v in values) else sum(values) / len(values)


def knowedit_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """EasyEdit's post-edit metrics, `combined`, and the pre-edit `pre_*` accuracies."""
    metrics = aggregate_knowedit([r["metrics"] for r in records])
    both = combined(metrics)
    if both is not None:
        metrics["combined"] = both
    pre = aggregate_knowedit([r["pre"] for r in records if r.get("pre") is not None])
    for key in ("edit_succ", "rephrase", "portability"):
        if key in pre:
            metrics[f"pre_{key}"] = pre[key]
    return metrics


def mquake_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return aggregate_mquake([r["metrics"] for r in records])


def summary_metrics(benchmark: str, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The summary metrics of `benchmark` ("knowedit" | "mquake") from case records."""
    if benchmark == "knowedit":
        return knowedit_metrics(records)
    if benchmark == "mquake":
        return mquake_metrics(records)
    raise UnknownBenchmarkError(f"no summary metrics for '{benchmark}' runs (knowedit and mquake only)")


def metric_intervals(benchmark: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Interval]:
    """The 95 % bootstrap interval of every summary metric (`benchmarks.scoring.intervals`)."""
    return bootstrap_intervals(records, lambda rs: summary_metrics(benchmark, rs))
