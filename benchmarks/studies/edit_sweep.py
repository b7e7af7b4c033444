"""Small hyper-parameter sweep for the editing defaults (layer, lr, templates, λ, τ) on CounterFact.

Each setting edits the same cases one at a time (undo in between) and reports rewrite / paraphrase /
neighbourhood accuracy and the median edit time. Results go to benchmarks/EDITING.md.

    python -m benchmarks.studies.edit_sweep --method rome --n 10 --grid layer=3,4,5 v_lr=0.5,1.0
    python -m benchmarks.studies.edit_sweep --method memit --n 20 --batch 20 --grid mom2_update_weight=1500,15000
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from dataclasses import replace

from benchmarks.data.counterfact import load_counterfact, locality_with_edit, request_of
from benchmarks.scoring.counterfact import measure
from kedit.editing import ParametricEditor, default_config
from kedit.runtime import load_model
from kedit.scoring import score_targets


def _parse(value: str):
    if value.startswith("("):
        return tuple(tuple(int(x) for x in part.strip("()").split(":")) for part in value.split(";") if part)
    try:
        return int(value)
    except ValueError:
        return float(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="rome")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument(
        "--grid",
        nargs="*",
        default=[],
        help="name=v1,v2 (first_layer=3 for memit/alphaedit); context_templates=(10:5);(5:10)",
    )
    a = ap.parse_args()
    bundle = load_model(a.model)
    editor = ParametricEditor(bundle)
    base = default_config(a.method, bundle.spec.family)
    cases, _ = load_counterfact(None, a.n)
    loc_b = score_targets(
        bundle, [c["locality_prompt"] for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    ctx_b = score_targets(
        bundle, [locality_with_edit(c) for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    names = [g.split("=")[0] for g in a.grid]
    values = [
        [_parse(v) for v in g.split("=")[1].split(",")] if "(" not in g else [_parse(g.split("=")[1])]
        for g in a.grid
    ]
    for combo in itertools.product(*values) if values else [()]:
        overrides = dict(zip(names, combo))
        if "first_layer" in overrides:  # MEMIT/AlphaEdit: shift the 5-layer window
            first = overrides.pop("first_layer")
            overrides["layers"] = tuple(range(first, first + len(base.layers)))
        cfg = replace(base, **overrides)
        metrics: dict[str, list[float]] = {}
        times = []
        for start in range(0, len(cases), a.batch):
            part = [(c, lb, cb) for c, lb, cb in zip(cases, loc_b, ctx_b)][start : start + a.batch]
            t0 = time.perf_counter()
            try:
                rec = editor.apply([request_of(c) for c, _, _ in part], method=a.method, config=cfg)
            except Exception as exc:  # noqa: BLE001 - skip already-true cases
                print("skip:", exc)
                continue
            times.append(time.perf_counter() - t0)
            for k, v in measure(
                bundle, [c for c, _, _ in part], [x for _, x, _ in part], [x for _, _, x in part]
            ).items():
                metrics.setdefault(k, []).append(statistics.mean(v))
            editor.undo(rec)
        row = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
        row.update({k: round(statistics.mean(v), 3) for k, v in metrics.items()})
        row["median_edit_s"] = round(statistics.median(times), 2) if times else None
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
