"""A run directory: `run.json` (what is being run), `cases.jsonl` (one line per finished case),
`summary.json` and `summary.md`. Runs resume: cases already in `cases.jsonl` are skipped, and a directory
holding a different run is refused rather than mixed.

>>> spec = RunSpec("knowedit", "/data/ZsRE-test-dev.json", "rome", "smollm2-135m", {"kind": "zsre"})
>>> run = RunDir(Path("runs/zsre-rome"), spec)        # doctest: +SKIP
>>> run.record({"case_id": "ZsRE-test-dev.json#0", "metrics": {"rewrite_acc": 1.0}})   # doctest: +SKIP
>>> run.write_summary({"edit_succ": 1.0}, n_cases=1, malformed=[])                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from benchmarks.data.loaders import Malformed
from benchmarks.scoring.intervals import METHOD as INTERVAL_METHOD
from benchmarks.scoring.intervals import Interval
from benchmarks.scoring.summary import BENCHMARKS, metric_intervals
from kedit.errors import KeditError

CASES, SUMMARY_JSON, SUMMARY_MD, RUN_JSON = "cases.jsonl", "summary.json", "summary.md", "run.json"
_MAX_LISTED_MALFORMED = 100


class RunDirError(KeditError):
    """The output directory holds a different run (or cannot be written)."""


def data_label(path: str | Path) -> str:
    """How a run records its data: relative to the data root when it lies there (`MQuAKE`, not a
    machine's absolute path), else as given. Committed run records must not name a machine's folders."""
    from kedit.paths import shared_data_dir

    root = shared_data_dir()
    resolved = Path(path).expanduser().resolve()
    if root is not None:
        try:
            return resolved.relative_to(root.resolve()).as_posix() or "."
        except ValueError:
            pass
    return Path(path).as_posix()


@dataclass(frozen=True)
class RunSpec:
    """What a run is: benchmark, data path, method, model and settings. Two runs with equal specs are the
    same run (so one may resume the other)."""

    benchmark: str
    data: str
    method: str
    model: str
    settings: dict[str, Any] = field(default_factory=dict)


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN -> None, tuples -> lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunDir:
    """Output directory of one run (created if needed)."""

    def __init__(self, out: str | Path, spec: RunSpec) -> None:
        self.path = Path(out)
        self.spec = spec
        self.t0 = time.perf_counter()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create run directory {self.path}: {exc}") from None
        run_json = self.path / RUN_JSON
        header = _clean(asdict(spec))
        if run_json.exists():
            try:
                existing = json.loads(run_json.read_text())
            except (OSError, ValueError):
                existing = None
            if existing != header:
                raise RunDirError(
                    f"{self.path} holds a different run ({RUN_JSON} differs: {existing}); "
                    "choose another --out or delete that directory"
                )
        else:
            run_json.write_text(json.dumps(header, indent=1, ensure_ascii=False))
        self._previous_seconds = self._read_previous_seconds()
        self._done = self._read_cases()

    def _read_previous_seconds(self) -> float:
        try:
            return float(json.loads((self.path / SUMMARY_JSON).read_text()).get("seconds", 0.0))
        except (OSError, ValueError, TypeError, AttributeError):
            return 0.0

    def _read_cases(self) -> dict[str, dict]:
        """Finished cases; a line cut short by an interrupted write is dropped (and the file rewritten)."""
        path = self.path / CASES
        if not path.exists():
            return {}
        done: dict[str, dict] = {}
        good_lines, bad = [], 0
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                done[str(rec["case_id"])] = rec
                good_lines.append(line)
            except (ValueError, KeyError, TypeError):
                bad += 1
        if bad:
            path.write_text("".join(f"{line}\n" for line in good_lines), encoding="utf-8")
        return done

    @property
    def finished(self) -> dict[str, dict]:
        """Records of the cases already done, by case id."""
        return self._done

    def record(self, rec: dict) -> None:
        """Append one finished case (flushed to disk at once, so an interrupt loses at most this case)."""
        rec = _clean(rec)
        with open(self.path / CASES, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._done[str(rec["case_id"])] = rec

    def _intervals(self) -> dict[str, Any]:
        """`intervals` (metric -> [low, high]) of the finished cases and how they were computed; none for a
        benchmark without summary metrics or fewer than two cases."""
        if self.spec.benchmark not in BENCHMARKS:
            return {}
        found = metric_intervals(self.spec.benchmark, list(self._done.values()))
        if not found:
            return {}
        return {
            "intervals": {name: [round(lo, 6), round(hi, 6)] for name, (lo, hi) in found.items()},
            "interval_method": INTERVAL_METHOD,
        }

    def seconds(self) -> float:
        return self._previous_seconds + (time.perf_counter() - self.t0)

    def write_summary(
        self,
        metrics: dict[str, float],
        n_cases: int,
        malformed: Sequence[Malformed],
        extra: dict[str, Any] | None = None,
        complete: bool = True,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """Write `summary.json` and `summary.md`; returns the summary dict. `seconds`: the run's time if
        not this process's (a merge of shards gives their sum)."""
        summary: dict[str, Any] = {
            **_clean(asdict(self.spec)),
            "n_cases": n_cases,
            "metrics": _clean(metrics),
            **self._intervals(),
            "seconds": round(self.seconds() if seconds is None else seconds, 2),
            "complete": complete,
            "n_malformed": len(malformed),
            "malformed": [str(m) for m in malformed[:_MAX_LISTED_MALFORMED]],
            **_clean(extra or {}),
        }
        (self.path / SUMMARY_JSON).write_text(json.dumps(summary, indent=1, ensure_ascii=False))
        (self.path / SUMMARY_MD).write_text(summary_markdown(summary), encoding="utf-8")
        return summary


def format_metric(name: str, value: Any) -> str:
    """Markdown cell: fractions ×100 with 2 decimals (fluency too, as EasyEdit's tables); '–' if absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, float)):
        return f"{100 * value:.2f}"
    return str(value)


def format_interval(value: Any, interval: Interval | Sequence[float] | None) -> str:
    """`format_metric` followed by the 95 % interval, e.g. `62.00 [55.0, 69.0]` (×100); the value alone
    when there is no interval.

    >>> format_interval(0.62, (0.55, 0.69)), format_interval(0.5, None), format_interval(None, (0.1, 0.2))
    ('62.00 [55.0, 69.0]', '50.00', '–')
    """
    text = format_metric("", value)
    if interval is None or text == "–":
        return text
    return f"{text} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def summary_markdown(summary: dict[str, Any]) -> str:
    """`summary.md`: one run's setup and metrics."""
    lines = [
        f"# {summary['benchmark']} · {summary['method']} · {summary['model']}",
        "",
        f"- data: `{summary['data']}` ({summary['n_cases']} cases"
        + (f", {summary['n_malformed']} malformed records skipped" if summary.get("n_malformed") else "")
        + ")",
        f"- settings: {json.dumps(summary.get('settings', {}), ensure_ascii=False)}",
        f"- time: {summary['seconds']:.1f} s"
        + ("" if summary.get("complete", True) else " (incomplete run)"),
        "",
        "| metric | value (×100) [95 % interval] |",
        "|---|---|",
    ]
    intervals = summary.get("intervals") or {}
    for name, value in summary["metrics"].items():
        lines.append(f"| {name} | {format_interval(value, intervals.get(name))} |")
    if intervals:
        lines += ["", f"Intervals: {summary.get('interval_method', '')}."]
    if summary.get("malformed"):
        lines += ["", "## Skipped records", ""] + [f"- {m}" for m in summary["malformed"]]
    return "\n".join(lines) + "\n"


@contextmanager
def progress_bar(description: str, total: int, done: int = 0, console: Console | None = None) -> Iterator:
    """A rich progress bar with count, elapsed time and ETA; yields `advance()`."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, completed=done)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance
