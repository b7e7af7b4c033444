"""95 % percentile-bootstrap intervals of summary metrics, resampling cases (scipy.stats.bootstrap).

A summary metric is a function of the run's case records (a mean over cases, or pooled over their edits or
hops), so the cases are what is resampled: each of `N_RESAMPLES` resamples draws n case indices with
replacement and recomputes every metric from those records; the interval is the 2.5th and 97.5th
percentile of the recomputed values. The seed is fixed, so the same records always give the same interval.
A metric a resample has no data for (a section none of its cases has) is left out of that resample.

>>> iv = bootstrap_intervals([{"acc": v} for v in (1.0, 0.0, 1.0, 1.0)], lambda rs: {"acc": sum(r["acc"] for r in rs) / len(rs)})
>>> iv["acc"][0] <= 0.75 <= iv["acc"][1]
True
>>> overlap((0.5, 0.7), (0.65, 0.9)), overlap((0.5, 0.6), (0.65, 0.9))
(True, False)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
METHOD = f"percentile bootstrap over cases, {N_RESAMPLES} resamples, seed {SEED}, {LEVEL:.0%}"

Interval = tuple[float, float]


def bootstrap_intervals(
    records: Sequence[Any],
    metrics_of: Callable[[Sequence[Any]], Mapping[str, float]],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """The interval of every metric `metrics_of(records)` returns (none with fewer than 2 records)."""
    records = list(records)
    names = sorted(metrics_of(records)) if len(records) >= 2 else []
    if not names:
        return {}

    def statistic(index: np.ndarray) -> np.ndarray:
        values = metrics_of([records[i] for i in index])
        return np.array([float(values[n]) if values.get(n) is not None else np.nan for n in names])

    with (
        warnings.catch_warnings()
    ):  # a constant metric (all cases 1.0) is "degenerate": its interval is exact
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (np.arange(len(records)),),
            statistic,
            n_resamples=n_resamples,
            vectorized=False,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    tail = 100 * (1 - level) / 2
    out: dict[str, Interval] = {}
    for j, name in enumerate(names):
        lo, hi = float(low[j]), float(high[j])
        if not (np.isfinite(lo) and np.isfinite(hi)):  # some resamples had no data for it: those left out
            dist = res.bootstrap_distribution[j]
            dist = dist[np.isfinite(dist)]
            if dist.size == 0:
                continue
            lo, hi = (float(v) for v in np.percentile(dist, [tail, 100 - tail]))
        out[name] = (lo, hi)
    return out


def overlap(a: Interval, b: Interval) -> bool:
    """Whether two intervals share a point (their metrics are not distinguishable at this level)."""
    return a[0] <= b[1] and b[0] <= a[1]
