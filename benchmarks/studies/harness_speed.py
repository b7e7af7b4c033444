"""KnowEdit harness speed: the legacy harness (case by case) and the batched one on the same cases.

    python -m benchmarks.studies.harness_speed --n 20                      # ROME, SmolLM2, first 20 ZsRE cases
    python -m benchmarks.studies.harness_speed --n 20 --method memit --warm
    python -m benchmarks.studies.harness_speed --n 20 --only batched --reference OLD/batched   # vs an earlier run

Prints seconds per case of each harness (edit included), the per-stage wall / process CPU seconds (CPU is
less inflated by other jobs' load), the ratio, whether the summary metrics are identical (exactly and at
the printed precision, ×100 with 2 decimals) and how many case lines are identical to the legacy run's (or,
with `--reference`, to those of a run directory made earlier, e.g. by another version of the code), and
the load average before and after (timings mean little on a busy machine). The batched harness starts
from an empty pre-edit cache (a fresh file) unless `--cache` names one; with `--warm` it runs a second
time reading the cache, as a later method or run does.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.data.loaders import load_knowedit
from benchmarks.methods.registry import make_method
from benchmarks.runners.knowedit import KnowEditSettings, run_knowedit
from benchmarks.runners.pre_cache import PreScoreCache
from benchmarks.runners.runs import CASES, SUMMARY_JSON, RunDir, RunSpec, format_metric
from kedit.paths import shared_data_dir

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "KnowEdit" / "ZsRE"


# timings, and the id a weight edit gets when made (a fresh one every run)
VOLATILE = ("_s", "weight_edit")


def _default_data() -> Path:
    root = shared_data_dir()
    full = root / "KnowEdit" / "ZsRE" if root is not None else None
    return full if full is not None and full.exists() else SAMPLE


def _lines(path: Path) -> list[dict]:
    """Case lines without their timings."""
    out = []
    for line in (path / CASES).read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        r.pop("edit_seconds", None)
        r.pop("eval_seconds", None)
        r["edit_info"] = {k: v for k, v in (r.get("edit_info") or {}).items() if not k.endswith(VOLATILE)}
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="KnowEdit ZsRE file or directory [default: shared data, else tests/data]",
    )
    ap.add_argument("--n", type=int, default=20, help="first N cases")
    ap.add_argument("--method", default="rome")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--cache", type=Path, default=None, help="pre-edit cache file [default: a fresh one]")
    ap.add_argument("--warm", action="store_true", help="run the batched harness again on the filled cache")
    ap.add_argument(
        "--out", type=Path, default=None, help="directory of the run dirs and result.json [default: temp]"
    )
    ap.add_argument("--only", choices=("legacy", "batched"), default=None, help="run one harness only")
    ap.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a run directory whose case lines and metrics every run is compared with [default: the legacy run]",
    )
    args = ap.parse_args(argv)

    from kedit import load_model

    data = args.data or _default_data()
    loaded = load_knowedit(data, limit=args.n)
    out = args.out or Path(tempfile.mkdtemp(prefix="harness-speed-"))
    cache = PreScoreCache(args.cache or out / "pre-cache.sqlite")
    bundle = load_model(args.model)
    method = make_method(args.method, bundle, "knowedit")
    settings = KnowEditSettings(loaded.kind, fluency=True, limit=args.n)
    spec = RunSpec("knowedit", str(data), args.method, args.model, {"kind": loaded.kind})
    load_before = os.getloadavg()
    runs: dict[str, dict] = {}
    plan = [("legacy", "legacy"), ("batched", "batched")] + (
        [("batched-warm", "batched")] if args.warm else []
    )
    plan = [(name, harness) for name, harness in plan if args.only in (None, harness)]
    for name, harness in plan:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = run_knowedit(
            method, loaded, RunDir(out / name, spec), settings, harness=harness, cache=cache
        )
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs[name] = {
            "seconds": round(seconds, 2),
            "per_case": round(seconds / len(loaded.cases), 3),
            "cpu_per_case": round(cpu / len(loaded.cases), 3),
            "stages": summary["stages"],
            "metrics": summary["metrics"],
            "pre_cache": summary.get("pre_cache"),
        }
    method.close()
    ref_dir = args.reference or out / plan[0][0]
    ref_lines = _lines(ref_dir)
    ref_metrics = json.loads((ref_dir / SUMMARY_JSON).read_text(encoding="utf-8"))["metrics"]
    for name in runs:
        runs[name]["identical_cases"] = sum(a == b for a, b in zip(ref_lines, _lines(out / name)))
        runs[name]["metrics_identical"] = runs[name]["metrics"] == ref_metrics
        runs[name]["printed_identical"] = all(
            format_metric(k, v) == format_metric(k, runs[name]["metrics"].get(k))
            for k, v in ref_metrics.items()
        )
    result = {
        "data": str(data),
        "n": len(loaded.cases),
        "method": args.method,
        "model": args.model,
        "reference": str(ref_dir),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
    }
    print(f"case lines and metrics compared with {ref_dir}")
    for name, r in runs.items():
        st, n = r["stages"], result["n"]
        stages = ", ".join(
            f"{k[:-2]} {v / n:.2f}/{st.get(k[:-2] + '_cpu_s', float('nan')) / n:.2f}"
            for k, v in st.items()
            if not k.endswith("_cpu_s")
        )
        print(
            f"{name:13s} {r['per_case']:6.2f} s/case, CPU {r['cpu_per_case']:.2f} s/case (wall/CPU s a case: {stages}) · "
            f"identical cases {r['identical_cases']}/{n} · metrics identical {r['metrics_identical']} "
            f"(printed {r['printed_identical']}) · pre cache {r['pre_cache']}"
        )
    for name in runs:
        if name != "legacy" and "legacy" in runs:
            print(f"speed-up {name} vs legacy: {runs['legacy']['per_case'] / runs[name]['per_case']:.2f}x")
    print(
        f"load average before {result['loadavg_before']}, after {result['loadavg_after']} "
        f"on {result['cpus']} CPUs, OMP_NUM_THREADS={result['threads']}"
    )
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"written to {out}/result.json")
    return result


if __name__ == "__main__":
    main()
