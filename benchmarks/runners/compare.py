"""Compare runs: Markdown tables across run directories and PNG plots (matplotlib, Agg backend).

- KnowEdit: one row per run (kind, model, method) with Edit Succ, Rephrase, Portability, Locality,
  Combined (mean of Edit Succ, Rephrase, Locality) (×100) and Fluency (×100, as EasyEdit's tables); a
  grouped bar plot per (kind, model).
- MQuAKE: one row per run (model, method, k) with the five MQuAKE metrics; multi-hop accuracy vs k per
  method, one plot per model.

Every value carries its 95 % bootstrap interval over cases (`benchmarks.scoring.intervals`): from
`summary.json`, or computed from the run's `cases.jsonl` for runs written before intervals were recorded
(a run without either shows the value alone). Within a group (KnowEdit: data × model; MQuAKE: model × k)
the best value of a column is bold, and `≈` marks a value whose interval overlaps the best one's: the two
are not distinguishable at that n.

>>> write_report([Path("runs/knowedit-zsre-rome-smollm2-135m")], Path("report.md"))   # doctest: +SKIP
[PosixPath('report.md'), PosixPath('knowedit-zsre-smollm2-135m.png')]
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.runners.runs import CASES, SUMMARY_JSON, RunDirError, format_interval  # noqa: E402
from benchmarks.scoring.intervals import overlap  # noqa: E402
from benchmarks.scoring.summary import BENCHMARKS, combined, metric_intervals  # noqa: E402

SIMILAR = "≈"  # a value not distinguishable from its column's best (their 95 % intervals overlap)

KNOWEDIT_COLUMNS = [
    ("edit_succ", "Edit Succ"),
    ("rephrase", "Rephrase"),
    ("portability", "Portability"),
    ("locality", "Locality"),
    ("combined", "Combined"),
    ("fluency", "Fluency"),
]
MQUAKE_COLUMNS = [
    ("edit_wise", "Edit-wise"),
    ("instance_wise", "Instance-wise"),
    ("multi_hop", "Multi-hop"),
    ("edited_hop_recall", "Edited hops"),
    ("unedited_hop_recall", "Unedited hops"),
]


def load_summaries(dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """`summary.json` of each run directory (a clear error for a directory without one)."""
    out = []
    for d in dirs:
        path = Path(d) / SUMMARY_JSON
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{d}: no readable {SUMMARY_JSON} ({exc})") from None
        summary["_dir"] = str(d)
        with_intervals(summary)
        out.append(summary)
    return out


def with_intervals(summary: dict[str, Any]) -> None:
    """Fill in what a run written before them lacks: KnowEdit's `combined` metric, and `intervals` from
    the run's `cases.jsonl` (left out when it has none)."""
    metrics = summary["metrics"]
    if summary["benchmark"] == "knowedit" and metrics.get("combined") is None:
        both = combined(metrics)
        if both is not None:
            metrics["combined"] = both
    if summary.get("intervals") or summary["benchmark"] not in BENCHMARKS:
        return
    cases = Path(summary["_dir"]) / CASES
    if not cases.is_file():
        return
    records = [json.loads(line) for line in cases.read_text(encoding="utf-8").splitlines() if line.strip()]
    summary["intervals"] = {k: list(v) for k, v in metric_intervals(summary["benchmark"], records).items()}


def marked_cells(group: list[dict[str, Any]], keys: Sequence[str]) -> dict[tuple[int, str], str]:
    """Cells of a group of runs compared with each other, by (index in `group`, metric): the best value of
    each metric bold, `≈` after a value whose interval overlaps the best one's."""
    cells: dict[tuple[int, str], str] = {}
    for key in keys:
        values = [s["metrics"].get(key) for s in group]
        spans = [(s.get("intervals") or {}).get(key) for s in group]
        scored = [v for v in values if isinstance(v, (int, float))]
        best = max(scored) if len(scored) >= 2 else None
        best_spans = [spans[i] for i, v in enumerate(values) if best is not None and v == best and spans[i]]
        for i, (value, span) in enumerate(zip(values, spans)):
            text = format_interval(value, span)
            if best is not None and value == best:
                head, sep, tail = text.partition(" ")
                text = f"**{head}**{sep}{tail}"
            elif best is not None and span and any(overlap(span, b) for b in best_spans):
                text += f" {SIMILAR}"
            cells[(i, key)] = text
    return cells


def _grouped(runs: list[dict[str, Any]], group_key, order_key) -> list[list[dict[str, Any]]]:
    """Runs by `group_key`, groups in key order, each ordered by `order_key`."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for s in runs:
        groups[group_key(s)].append(s)
    return [sorted(g, key=order_key) for _, g in sorted(groups.items())]


def method_label(summary: dict[str, Any]) -> str:
    """Method name with its variant flags, e.g. `rome+sadr`, `memit (seq)`, `none (cot)`."""
    settings = summary.get("settings", {})
    label = summary["method"] + ("+sadr" if settings.get("sadr") else "")
    flags = [f for f, on in (("seq", settings.get("sequential")), ("cot", settings.get("cot"))) if on]
    return f"{label} ({', '.join(flags)})" if flags else label


def _k(summary: dict[str, Any]) -> int:
    return int(summary.get("edits_per_batch") or 1)


def _k_label(summary: dict[str, Any]) -> str:
    raw = summary.get("settings", {}).get("edits_per_batch", str(_k(summary)))
    return f"all ({_k(summary)})" if raw == "all" else str(raw)


def _n_label(summary: dict[str, Any]) -> str:
    """Cases scored; "25 of 100" when only the first cases of each batch were probed (`--probe-per-batch`)."""
    edited = summary.get("n_cases_edited")
    if summary.get("settings", {}).get("probe_per_batch") and edited and edited != summary["n_cases"]:
        return f"{summary['n_cases']} of {edited}"
    return str(summary["n_cases"])


def knowedit_table(runs: list[dict[str, Any]]) -> list[str]:
    head = ["data", "model", "method", "n"] + [c for _, c in KNOWEDIT_COLUMNS] + ["s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = [k for k, _ in KNOWEDIT_COLUMNS]
    for group in _grouped(runs, lambda s: (s.get("kind", ""), s["model"]), method_label):
        marked = marked_cells(group, keys)
        for i, s in enumerate(group):
            cells = [s.get("kind", "?"), s["model"], method_label(s), str(s["n_cases"])]
            cells += [marked[(i, k)] for k in keys]
            cells.append(f"{s['seconds']:.0f}" + ("" if s.get("complete", True) else " (incomplete)"))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def mquake_table(runs: list[dict[str, Any]]) -> list[str]:
    head = ["model", "method", "k", "n"] + [c for _, c in MQUAKE_COLUMNS] + ["conflicted", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = [k for k, _ in MQUAKE_COLUMNS]
    marks: dict[
        tuple[int, str], str
    ] = {}  # (id of the summary, metric) -> cell, marked within its (model, k) group
    for group in _grouped(runs, lambda s: (s["model"], _k(s)), method_label):
        marked = marked_cells(group, keys)
        marks |= {(id(s), k): marked[(i, k)] for i, s in enumerate(group) for k in keys}
    for s in sorted(runs, key=lambda s: (s["model"], method_label(s), _k(s))):
        cells = [s["model"], method_label(s), _k_label(s), _n_label(s)]
        cells += [marks[(id(s), k)] for k in keys]
        cells += [
            str(s.get("n_conflicted", 0)),
            f"{s['seconds']:.0f}" + ("" if s.get("complete", True) else " (incomplete)"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


STAGES = ("apply", "single_hop", "multi_hop", "undo")


def stages_table(runs: list[dict[str, Any]]) -> list[str]:
    """MQuAKE run time by stage (wall / process CPU seconds) for runs that recorded it: applying the
    edits, the single-hop probes (edit-wise and hop recall), the multi-hop questions, undoing."""
    timed = [s for s in runs if s.get("stages")]
    if not timed:
        return []
    head = ["model", "method", "k", "n"] + [f"{name} (wall / CPU s)" for name in STAGES] + ["total wall s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in sorted(timed, key=lambda s: (s["model"], method_label(s), _k(s))):
        st = s["stages"]
        cells = [s["model"], method_label(s), _k_label(s), _n_label(s)]
        cells += [f"{st.get(f'{n}_s', 0):.0f} / {st.get(f'{n}_cpu_s', 0):.0f}" for n in STAGES]
        cells.append(f"{s['seconds']:.0f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def plot_mquake(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Multi-hop accuracy (and instance-wise, dashed) vs k, one line per method, one PNG per model."""
    written = []
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in runs:
        by_model[s["model"]].append(s)
    for model, group in sorted(by_model.items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in group:
            by_method[method_label(s)].append(s)
        for label, ss in sorted(by_method.items()):
            ss = sorted(ss, key=_k)
            xs = [_k(s) for s in ss]
            line = ax.plot(
                xs, [100 * (s["metrics"].get("multi_hop") or 0) for s in ss], marker="o", label=label
            )[0]
            ax.plot(
                xs,
                [100 * (s["metrics"].get("instance_wise") or 0) for s in ss],
                ls="--",
                color=line.get_color(),
                alpha=0.5,
            )
        ax.set_xscale("log")
        ax.set_xlabel("edits applied together (k cases)")
        ax.set_ylabel("accuracy (%)  — multi-hop solid, instance-wise dashed")
        ax.set_title(f"MQuAKE · {model}")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"mquake-{_slug(model)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def plot_knowedit(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Grouped bars of Edit Succ / Rephrase / Portability / Locality per method, one PNG per (kind, model)."""
    written = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in runs:
        groups[(s.get("kind", "?"), s["model"])].append(s)
    for (kind, model), group in sorted(groups.items()):
        keys = [
            (k, c)
            for k, c in KNOWEDIT_COLUMNS
            if k not in ("fluency", "combined") and any(k in s["metrics"] for s in group)
        ]
        group = sorted(group, key=method_label)
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(group) + 2), 4))
        width = 0.8 / max(1, len(keys))
        for j, (key, caption) in enumerate(keys):
            xs = [i + j * width for i in range(len(group))]
            ax.bar(xs, [100 * (s["metrics"].get(key) or 0) for s in group], width, label=caption)
        ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(group))])
        ax.set_xticklabels([method_label(s) for s in group], rotation=20)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"KnowEdit {kind} · {model}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"knowedit-{_slug(kind)}-{_slug(model)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_report(
    dirs: Sequence[Path], out: Path, plots_dir: Path | None = None, header: str | None = None
) -> list[Path]:
    """Write the Markdown report `out` and its plots (in `plots_dir`, default beside it); returns the paths
    written. `header` (Markdown) is put first, in place of the default title."""
    summaries = load_summaries(dirs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plots_dir = Path(plots_dir) if plots_dir is not None else out.parent
    plots_dir.mkdir(parents=True, exist_ok=True)
    ke = [s for s in summaries if s["benchmark"] == "knowedit"]
    mq = [s for s in summaries if s["benchmark"] == "mquake"]
    plots = (plot_knowedit(ke, plots_dir) if ke else []) + (plot_mquake(mq, plots_dir) if mq else [])
    lines = header.rstrip().split("\n") + [""] if header else ["# Benchmark comparison", ""]
    lines += [
        "Values ×100 (Fluency: EasyEdit's n-gram entropy ×100, as in its tables), each with its 95 % interval "
        "in brackets (percentile bootstrap over the run's cases, 1000 resamples, fixed seed). Combined: the "
        "mean of Edit Succ, Rephrase and Locality. In each group (KnowEdit: data × model; MQuAKE: model × k) "
        f"the best value of a column is **bold**; {SIMILAR} marks a value whose interval overlaps the best "
        "one's (not distinguishable from it at that n).",
        "",
    ]
    if ke:
        lines += ["## KnowEdit", ""] + knowedit_table(ke) + [""]
    if mq:
        lines += ["## MQuAKE", ""] + mquake_table(mq) + [""]
        timing = stages_table(mq)
        if timing:
            lines += ["### MQuAKE run time by stage", ""] + timing + [""]
    if plots:
        rel = [os.path.relpath(p, out.parent) for p in plots]
        lines += ["## Plots", ""] + [f"![{p.stem}]({r})" for p, r in zip(plots, rel)] + [""]
    lines += ["## Runs", ""] + [f"- `{s['_dir']}`: {s['benchmark']} on `{s['data']}`" for s in summaries]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [out, *plots]
