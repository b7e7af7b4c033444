"""Runs that scale out: `--shard i/n` gives a runner the i-th of n contiguous, near-equal slices of its
work units (KnowEdit cases; MQuAKE batches of k cases, so a batch's edits stay together), and `merge_runs`
combines the shards' run directories into one whose `cases.jsonl` is the unsharded run's and whose summary
is recomputed from the merged cases.

>>> Shard.parse("2/3").select(list(range(7)))
[2, 3]
>>> Shard.parse("4/3")
Traceback (most recent call last):
...
benchmarks.runners.shards.ShardSpecError: --shard 4/3: i must be between 1 and n (3)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kedit.errors import KeditError

T = TypeVar("T")


class ShardSpecError(KeditError):
    """A `--shard` value that is not `i/n` with 1 <= i <= n, or that leaves a shard nothing to do."""


class MergeError(KeditError):
    """Run directories that are not shards of one run, or shards that overlap or are missing."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, spec: str) -> Shard:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
        if not m:
            raise ShardSpecError(f"--shard {spec!r}: expected i/n, e.g. 1/4")
        i, n = int(m.group(1)), int(m.group(2))
        if n < 1:
            raise ShardSpecError(f"--shard {spec}: n must be at least 1")
        if not 1 <= i <= n:
            raise ShardSpecError(f"--shard {spec}: i must be between 1 and n ({n})")
        return cls(i, n)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def bounds(self, total: int) -> tuple[int, int]:
        """[start, stop) of this shard among `total` units (sizes differ by at most one)."""
        if self.count > total:
            raise ShardSpecError(f"--shard {self}: {total} unit(s) of work cannot be split {self.count} ways")
        return (self.index - 1) * total // self.count, self.index * total // self.count

    def select(self, items: Sequence[T]) -> list[T]:
        start, stop = self.bounds(len(items))
        return list(items[start:stop])


def shard_spec(settings: dict[str, Any], shard: Shard | None) -> dict[str, Any]:
    """A run's settings with its shard recorded (only when split, so an unsharded run's spec is unchanged
    and older runs still resume)."""
    if shard is None or shard.count == 1:
        return dict(settings)
    return {**settings, "shard": str(shard)}


def _read(path: Path) -> tuple[dict, dict, list[dict]]:
    try:
        spec = json.loads((path / "run.json").read_text())
        summary = json.loads((path / "summary.json").read_text())
        lines = (
            (path / "cases.jsonl").read_text(encoding="utf-8").splitlines()
            if (path / "cases.jsonl").exists()
            else []
        )
        cases = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path} is not a finished run directory (run.json, summary.json): {exc}") from None
    return spec, summary, cases


def merge_runs(dirs: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Combine the shard run directories `dirs` into `out`; returns the merged summary.

    The shards must have equal specs but for `shard`, the same n, distinct i; the merged run is marked
    complete only if all n shards are there and complete. Its `run.json` is the unsharded run's spec, so
    the unsharded runner would resume it."""
    from benchmarks.runners.runs import CASES, RunDir, RunSpec

    if not dirs:
        raise MergeError("no run directories to merge")
    shards = [(Path(d), *_read(Path(d))) for d in dirs]
    base = None
    seen: dict[int, Path] = {}
    count = None
    for path, spec, _, _ in shards:
        settings = dict(spec.get("settings") or {})
        shard = Shard.parse(settings.pop("shard", "1/1"))
        unsharded = {**spec, "settings": settings}
        if base is None:
            base, count = unsharded, shard.count
        elif unsharded != base:
            raise MergeError(f"{path} is another run than {shards[0][0]} (run.json differs beyond its shard)")
        if shard.count != count:
            raise MergeError(f"{path} is shard {shard} but {shards[0][0]} splits the run {count} ways")
        if shard.index in seen:
            raise MergeError(f"{path} and {seen[shard.index]} are both shard {shard}")
        seen[shard.index] = path
    assert base is not None and count is not None
    # shards are contiguous slices, each written in case order: shard order then file order is the run's
    order = {path: i for i, path in seen.items()}
    records = [r for path, _, _, cases in sorted(shards, key=lambda s: order[s[0]]) for r in cases]
    ids = [str(r["case_id"]) for r in records]
    if len(set(ids)) != len(ids):
        raise MergeError("the shards share cases; were they split the same way?")
    out = Path(out)
    if (out / CASES).exists():
        raise MergeError(f"{out} already holds cases; merge into a new directory")
    run = RunDir(
        out, RunSpec(base["benchmark"], base["data"], base["method"], base["model"], base["settings"])
    )
    for rec in records:
        run.record(rec)
    summaries = [s for _, _, s, _ in shards]
    complete = len(seen) == count and all(s.get("complete") for s in summaries)
    extra = _merged_extra(base["benchmark"], summaries, records)
    malformed = summaries[0].get("malformed", [])
    extra["n_malformed"] = summaries[0].get("n_malformed", len(malformed))
    extra["merged_from"] = [f"shard {i}/{count}" for i in sorted(seen)]
    seconds = sum(float(s.get("seconds", 0.0)) for s in summaries)
    return run.write_summary(
        _metrics(base["benchmark"], records), len(records), malformed, extra, complete, seconds
    )


def _metrics(benchmark: str, records: list[dict]) -> dict[str, float]:
    from benchmarks.scoring.summary import summary_metrics

    if benchmark not in ("knowedit", "mquake"):
        raise MergeError(f"cannot merge '{benchmark}' runs (knowedit and mquake only)")
    return summary_metrics(benchmark, records)


def _merged_extra(benchmark: str, summaries: list[dict], records: list[dict]) -> dict[str, Any]:
    """The summary fields beside the metrics: counts summed or recomputed, stage seconds summed."""
    skip = {
        "benchmark",
        "data",
        "method",
        "model",
        "settings",
        "n_cases",
        "metrics",
        "seconds",
        "complete",
        "n_malformed",
        "malformed",
        "intervals",
        "interval_method",
    }  # intervals: recomputed from the merged cases
    extra = {k: v for k, v in summaries[0].items() if k not in skip}
    for key in ("n_requested", "n_cases_edited", "n_batches"):
        if key in extra:
            extra[key] = sum(int(s.get(key, 0)) for s in summaries)
    extra["n_edit_errors"] = sum(1 for r in records if r.get("edit_error"))
    if benchmark == "mquake":
        extra["n_conflicted"] = sum(1 for r in records if r["metrics"].get("conflicted"))
    stages: dict[str, float] = {}
    for s in summaries:
        for name, v in (s.get("stages") or {}).items():
            stages[name] = round(stages.get(name, 0.0) + float(v), 2)
    if stages:
        extra["stages"] = stages
    return extra
