"""Per-case ROME/MEMIT/... edits on the first CounterFact cases: p(target) before/after, teacher-forced
accuracy, value steps and seconds per edit, for the default config and any overrides (one edit at a
time, undone after each). Used for the gemma3-270m check in benchmarks/EDITING.md.

    python -m benchmarks.studies.edit_cases --model gemma3-270m --method rome --n 6 --set mom2_adjustment=False
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import time
from dataclasses import replace

from benchmarks.data.counterfact import load_counterfact, request_of
from kedit.editing import ParametricEditor, default_config
from kedit.runtime import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="rome")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--set", nargs="*", default=[], help="name=value overrides, each run as its own config")
    a = ap.parse_args()
    bundle = load_model(a.model)
    editor = ParametricEditor(bundle)
    cases, _ = load_counterfact(None, a.n)
    base = default_config(a.method, bundle.spec.family)
    configs = {"default": base}
    for item in a.set:
        name, value = item.split("=", 1)
        configs[item] = replace(base, **{name: ast.literal_eval(value)})
    for label, cfg in configs.items():
        accs, secs = [], []
        for case in cases:
            t0 = time.perf_counter()
            try:
                rec = editor.apply([request_of(case)], method=a.method, config=cfg)
            except Exception as exc:  # noqa: BLE001 - already-true cases are not edits
                print(json.dumps({"config": label, "subject": case["subject"], "skipped": str(exc)[:100]}))
                continue
            secs.append(time.perf_counter() - t0)
            v = rec.verification[0]
            accs.append(v["after"]["accuracy"])
            print(
                json.dumps(
                    {
                        "config": label,
                        "subject": case["subject"],
                        "target": case["target_new"],
                        "p_before": round(v["before"]["prob"], 4),
                        "p_after": round(v["after"]["prob"], 4),
                        "accuracy": v["after"]["accuracy"],
                        "steps": [r.steps for r in rec.info.value_runs],
                        "s": round(secs[-1], 2),
                    }
                ),
                flush=True,
            )
            editor.undo(rec)
        print(
            json.dumps(
                {
                    "config": label,
                    "cases": len(accs),
                    "rewrite": round(statistics.mean(accs), 3) if accs else None,
                    "successes": sum(x == 1.0 for x in accs),
                    "median_s": round(statistics.median(secs), 2) if secs else None,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
