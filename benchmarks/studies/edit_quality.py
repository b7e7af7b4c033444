"""Edit quality on CounterFact: rewrite / paraphrase / neighbourhood accuracy, ± SADR, single or sequential.

Metrics are EasyEdit's teacher-forced token accuracies (kedit.scoring): rewrite = target_new after the
edit prompt, paraphrase = target_new after the rephrase prompt, neighbourhood = agreement of the
locality prompt's predicted tokens before vs after (locality). "neighbourhood+ctx" prepends the edit
sentence to the locality prompt (docs/methods.md §4): the specificity SADR targets.

Cases are the first N of `counterfact-val.json` whose new target the model does not already produce.
"single": each batch (`--batch`, 1 for ROME/FT-L) is applied, measured and undone. "sequential": all
batches are applied one after the other (edits stack) and every case is measured after the last one.

One cell (model, method, ±SADR, mode, batch, overrides, effective config) per run; with `--out FILE.jsonl`
the result is appended and a cell already there with at least N cases is skipped (resumable; a row
without a recorded config counts as done whatever the defaults are now); `--table FILE.jsonl` prints the
Markdown table of every cell recorded (a cell measured under several recorded configs is tagged with each).

    python -m benchmarks.studies.edit_quality --method rome --n 200 --out benchmarks/results/edit_quality.jsonl
    python -m benchmarks.studies.edit_quality --method alphaedit --n 100 --batch 10 --sequential --out ...
    python -m benchmarks.studies.edit_quality --table benchmarks/results/edit_quality.jsonl
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import hashlib
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.data.counterfact import editable_cases, locality_with_edit, request_of
from benchmarks.scoring.counterfact import METRICS, measure
from kedit.editing import ParametricEditor, default_config
from kedit.runtime import load_model
from kedit.scoring import score_targets


def run(
    model: str,
    method: str,
    n: int,
    sadr: bool,
    sequential: bool,
    batch: int,
    data: Path | None,
    overrides: dict | None = None,
    bundle=None,
    block: int | None = None,
    trace: bool = False,
) -> dict:
    bundle = bundle if bundle is not None else load_model(model)
    editor = ParametricEditor(bundle)
    cfg = replace(default_config(method, bundle.spec.family), **(overrides or {}))
    if method not in ("memit", "alphaedit"):
        batch = 1
    cases, skipped, source = editable_cases(bundle, n, data)
    loc_before = score_targets(
        bundle, [c["locality_prompt"] for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    ctx_before = score_targets(
        bundle, [locality_with_edit(c) for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    metrics: dict[str, list[float]] = {}
    times: list[float] = []
    cpu: list[float] = []
    used: list[int] = []
    steps: list = []
    trace_rows: list[dict] = []
    now_true = 0
    # sequential: blocks of `block` cases are edited one after the other, measured after the block's last
    # edit and undone before the next block (e.g. 2 x 100 sequential edits = 200 cases)
    block = block if sequential and block else len(cases)
    for b0 in range(0, len(cases), block):
        b_end = min(b0 + block, len(cases))
        b_used: list[int] = []
        for start in range(b0, b_end, batch):
            part = list(range(start, min(start + batch, b_end)))
            if sequential and editor.live:  # earlier edits can make a later target the answer already
                now = score_targets(
                    bundle, [cases[i]["prompt"] for i in part], [cases[i]["target_new"] for i in part]
                )
                now_true += sum(s.accuracy == 1.0 for s in now)
                part = [i for i, s in zip(part, now) if s.accuracy < 1.0]
                if not part:
                    continue
            t0, c0 = time.perf_counter(), time.process_time()
            rec = editor.apply([request_of(cases[i]) for i in part], method=method, config=cfg, sadr=sadr)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            steps.append([r.steps for r in rec.info.value_runs])  # one per value optimisation
            used += part
            b_used += part
            if trace and sequential:  # do edits not take, or do later ones undo earlier ones?
                trace_rows.append(_trace_row(bundle, rec, [cases[i] for i in b_used], len(part)))
                print(json.dumps({"trace": trace_rows[-1]}), flush=True)
            if not sequential:
                sub = measure(
                    bundle,
                    [cases[i] for i in part],
                    [loc_before[i] for i in part],
                    [ctx_before[i] for i in part],
                )
                for k, v in sub.items():
                    metrics.setdefault(k, []).extend(v)
                editor.undo(rec)
        if sequential and b_used:  # every case of the block once, after its last edit; then undo the block
            sub = measure(
                bundle,
                [cases[i] for i in b_used],
                [loc_before[i] for i in b_used],
                [ctx_before[i] for i in b_used],
            )
            for k, v in sub.items():
                metrics.setdefault(k, []).extend(v)
        for rec in reversed(list(editor.live)):
            editor.undo(rec)
    return {
        "model": model,
        "method": method,
        "sadr": sadr,
        "sequential": sequential,
        "batch": batch,
        "overrides": {k: str(v) for k, v in (overrides or {}).items()},
        "config": cfg.to_dict(),  # the effective config: a changed default is a new cell
        "cases": len(used),
        "skipped_already_true": skipped,
        "became_true_before_their_batch": now_true,
        "edits_applied": len(used),
        "data": source,
        "block": block if sequential and block < len(cases) else None,
        "median_edit_s": round(statistics.median(times), 3) if times else None,
        "median_edit_cpu_s": round(statistics.median(cpu), 3) if cpu else None,
        "load_avg": round(os.getloadavg()[0], 2),
        **{k: round(statistics.mean(v), 4) for k, v in metrics.items()},
        # per case, in the order of `used`, for paired comparisons between cells of the same cases
        "case_ids": [cases[i].get("case_id", i) for i in used],
        "per_case": {k: [round(x, 4) for x in v] for k, v in metrics.items()},
        "value_steps": steps,
        **({"trace": trace_rows} if trace_rows else {}),
    }


def _trace_row(bundle, rec, applied: list[dict], n_new: int) -> dict:
    """After one sequential update: rewrite of its own requests, rewrite of every edit of the block so far
    (earlier ones included), and the update's Frobenius norm summed over the changed matrices."""
    held = score_targets(bundle, [c["prompt"] for c in applied], [c["target_new"] for c in applied])
    earlier = held[: len(applied) - n_new]
    return {
        "edits": len(applied),
        "own_rewrite": round(statistics.mean(v["after"]["accuracy"] for v in rec.verification), 4),
        "earlier_rewrite": round(statistics.mean(s.accuracy for s in earlier), 4) if earlier else None,
        "all_rewrite": round(statistics.mean(s.accuracy for s in held), 4),
        "delta_norm": round(
            sum(
                float(op.dense(tuple(rec.fingerprints[n]["shape"])).double().norm()) ** 2
                for n, op in rec.steps
            )
            ** 0.5,
            3,
        ),
        "value_steps": [r.steps for r in rec.info.value_runs],
    }


def _cell(r: dict) -> tuple:
    """A cell: model, method, ±SADR, mode, batch, overrides and the effective config (rows written before
    the config was recorded have None there, so rerunning after a default changed adds a new cell)."""
    return (
        r["model"],
        r["method"],
        r["sadr"],
        r["sequential"],
        r["batch"],
        r.get("block"),
        json.dumps(r.get("overrides", {}), sort_keys=True),
        json.dumps(r.get("config"), sort_keys=True),
    )


def _config_tag(r: dict, others: list[dict]) -> str:
    """What sets this row's config apart from the other configs of its cell (fields absent: "–")."""
    if r.get("config") is None:
        return "earlier defaults"
    cfgs = [o["config"] for o in others if o.get("config") is not None and o is not r]
    keys = sorted({k for c in cfgs for k in set(c) | set(r["config"]) if c.get(k) != r["config"].get(k)})
    if not keys:
        return "config " + hashlib.sha1(json.dumps(r["config"], sort_keys=True).encode()).hexdigest()[:7]
    return ", ".join(f"{k}={r['config'].get(k, '–')}" for k in keys)


def table(path: Path) -> str:
    """Markdown table of the cells in a results file (the largest N per cell)."""
    best: dict[tuple, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if _cell(r) not in best or r["cases"] >= best[_cell(r)]["cases"]:
                best[_cell(r)] = r
    head = "| model | method | SADR | mode | N | rewrite | paraphrase | neighbourhood | neighb.+ctx | median s/edit (CPU) |"
    lines = [head, "|" + "---|" * 10]
    # a row without a recorded config (written before configs were recorded) is superseded by a row of
    # the same cell with a config and at least as many cases, as the resume rule treats it
    for key, r in list(best.items()):
        if r.get("config") is None and any(
            k[:-1] == key[:-1] and o.get("config") is not None and o["cases"] >= r["cases"]
            for k, o in best.items()
        ):
            del best[key]
    variants: dict[tuple, int] = {}
    for key in best:
        variants[key[:-1]] = variants.get(key[:-1], 0) + 1
    for r in sorted(best.values(), key=lambda r: (r["model"], r["sequential"], r["method"], r["sadr"])):
        seq = (
            f"{r['block']} sequential × {-(-r['cases'] // r['block'])} blocks"
            if r.get("block")
            else f"{r['cases']} sequential"
        )
        mode = (
            f"{seq} (batch {r['batch']})"
            if r["sequential"]
            else ("single" if r["batch"] == 1 else f"batch {r['batch']}")
        )
        name = r["method"] + (
            " " + " ".join(f"{k}={v}" for k, v in r["overrides"].items()) if r.get("overrides") else ""
        )
        if variants[_cell(r)[:-1]] > 1:  # the same cell under different defaults: say which row is which
            name += f" ({_config_tag(r, [o for k, o in best.items() if k[:-1] == _cell(r)[:-1]])})"
        cpu = r.get("median_edit_cpu_s")
        lines.append(
            f"| {r['model']} | {name} | {'yes' if r['sadr'] else 'no'} | {mode} | {r['cases']} | "
            + " | ".join(f"{r.get(m, float('nan')):.3f}" for m in METRICS)
            + f" | {r['median_edit_s']:.2f} ({cpu if cpu is not None else '-'}) |"
        )
    return "\n".join(lines)


def _select(rows: list[dict], spec: str) -> dict:
    """The largest-N row matching `key=value,...` (values as Python literals or bare strings)."""
    want = {}
    for item in filter(None, spec.split(",")):
        key, _, raw = item.partition("=")
        try:
            want[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            want[key.strip()] = raw.strip()

    def value(r: dict, k: str):  # a row field, else a config field; absent = None
        return r[k] if k in r else (r.get("config") or {}).get(k)

    hits = [r for r in rows if all(value(r, k) == v for k, v in want.items())]
    if not hits:
        raise SystemExit(f"no cell matches {spec!r}")
    return max(hits, key=lambda r: r["cases"])


def paired(path: Path, spec_a: str, spec_b: str) -> str:
    """B - A per metric over the cases both cells measured: mean ± standard error, cases better / worse.

        python -m benchmarks.studies.edit_quality --paired benchmarks/results/edit_quality.jsonl \\
            "method=memit,sequential=True,block=100" "method=alphaedit,sequential=True,block=100"
    """
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    a, b = _select(rows, spec_a), _select(rows, spec_b)
    ia = {c: i for i, c in enumerate(a["case_ids"])}
    common = [(ia[c], j) for j, c in enumerate(b["case_ids"]) if c in ia]
    lines = [
        f"B − A over {len(common)} common cases; A = {spec_a} (N={a['cases']}), B = {spec_b} (N={b['cases']})",
        "",
        "| metric | A | B | B − A (± s.e.) | B better / worse |",
        "|---|---|---|---|---|",
    ]
    for m in METRICS:
        xa = [a["per_case"][m][i] for i, _ in common]
        xb = [b["per_case"][m][j] for _, j in common]
        d = [y - x for x, y in zip(xa, xb)]
        se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
        lines.append(
            f"| {m} | {statistics.mean(xa):.3f} | {statistics.mean(xb):.3f} | {statistics.mean(d):+.3f} ± {se:.3f} | "
            f"{sum(x > 0 for x in d)} / {sum(x < 0 for x in d)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="rome", choices=["rome", "memit", "alphaedit", "ft-l"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--sadr", action="store_true")
    ap.add_argument("--sequential", action="store_true")
    ap.add_argument("--batch", type=int, default=1, help="requests per apply() for memit/alphaedit")
    ap.add_argument(
        "--block",
        type=int,
        default=None,
        help="sequential: edits per block (measured after the block, undone before the next)",
    )
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument(
        "--trace",
        action="store_true",
        help="sequential: after each update, print and record its own / the earlier edits' rewrite and ‖Δ‖",
    )
    ap.add_argument("--set", nargs="*", default=[], help="config overrides, name=python-literal")
    ap.add_argument(
        "--out", type=Path, default=None, help="append the result here (JSON lines); skip a cell done"
    )
    ap.add_argument(
        "--table", type=Path, default=None, help="print the Markdown table of a results file and exit"
    )
    ap.add_argument(
        "--paired",
        nargs=3,
        metavar=("FILE", "A", "B"),
        default=None,
        help="paired comparison of two cells (key=value,... selectors; the largest N matching), then exit",
    )
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
        return
    if a.paired:
        print(paired(Path(a.paired[0]), a.paired[1], a.paired[2]))
        return
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in a.set)}
    bundle = None
    if a.out and a.out.exists():
        want = {
            "model": a.model,
            "method": a.method,
            "sadr": a.sadr,
            "sequential": a.sequential,
            "batch": a.batch if a.method in ("memit", "alphaedit") else 1,
            "block": a.block if a.sequential and a.block and a.block < a.n else None,
            "overrides": {k: str(v) for k, v in overrides.items()},
        }
        rows = [json.loads(line) for line in a.out.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if _cell(r)[:-1] == _cell(want)[:-1] and r["cases"] >= a.n]
        if rows:  # the effective config (the model family's defaults + overrides) decides; rows written
            # before the config was recorded still count as done (their defaults are not known)
            bundle = load_model(a.model)
            want["config"] = replace(default_config(a.method, bundle.spec.family), **overrides).to_dict()
            for r in rows:
                if r.get("config") is None or _cell(r) == _cell(want):
                    print(json.dumps({"skipped": "cell already measured", **r}))
                    return
    result = run(
        a.model,
        a.method,
        a.n,
        a.sadr,
        a.sequential,
        a.batch,
        a.data,
        overrides,
        bundle=bundle,
        block=a.block,
        trace=a.trace,
    )
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(result) + "\n").encode()
        fd = os.open(a.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:  # one locked write: several cells may run side by side and append to the same file
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
