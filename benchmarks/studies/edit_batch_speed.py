"""MEMIT / AlphaEdit: one batch of N CounterFact edits — time, rewrite / paraphrase / neighbourhood accuracy,
and the ratio to the old value loop measured in the same process.

The batch is `editor.apply(requests, method=...)` on the first N CounterFact (val) cases the model does not
already answer, timed end to end (value optimisation, key passes and layer solves, before/after
verification). The second-moment statistics, projector and context templates are loaded (or computed)
before the clock starts: they are per-model caches, computed once. Quality is measured after the batch
(all N edits live) with the EasyEdit teacher-forced metrics of `benchmarks/studies/edit_quality.py`.

The old path (`--legacy-n K`, 0 to skip) is the value loop before the batched rewrite
(`benchmarks/legacy/values.py`: chunks of 16, padded rows, loss-only stop — the previous MEMIT
default) run on the first K requests of the same batch; its time is extrapolated linearly to N (its
chunks are independent) and the key/solve/verify time of the new run (same code in both paths) is added.
CPU (process) seconds are printed beside wall seconds: on a shared machine the wall clock also measures
the other users' load.

    python -m benchmarks.studies.edit_batch_speed --method memit --n 100 --legacy-n 16
    python -m benchmarks.studies.edit_batch_speed --method alphaedit --n 100 --legacy-n 0
    python -m benchmarks.studies.edit_batch_speed --n 30 --set argmax_stop_prob=0 context_templates="((10,5),)"
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import time
from dataclasses import replace

import torch

from benchmarks.data.counterfact import load_counterfact, locality_with_edit, request_of
from benchmarks.legacy.values import legacy_optimise_values
from benchmarks.scoring.counterfact import measure
from kedit.editing import AlphaEditConfig, MEMITConfig, ParametricEditor, default_config
from kedit.editing.templates import context_templates
from kedit.runtime import load_model
from kedit.scoring import score_targets

# The MEMIT value settings before this change (6 templates, stop only at loss < 0.05).
OLD_VALUES = {"context_templates": ((10, 5),), "argmax_stop_prob": 0.0}


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        out[key] = ast.literal_eval(value)
    return out


def pick_cases(bundle, n: int, offset: int = 0) -> list[dict]:
    """The first n CounterFact cases (from `offset`) whose new target the model does not already produce."""
    pool, _ = load_counterfact(None, offset + 3 * n + 20)
    pool = pool[offset:]
    scores = score_targets(bundle, [c["prompt"] for c in pool], [c["target_new"] for c in pool])
    return [c for c, s in zip(pool, scores) if s.accuracy < 1.0][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="memit", choices=["memit", "alphaedit"])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--offset", type=int, default=0, help="first CounterFact case to consider")
    ap.add_argument("--legacy-n", type=int, default=16, help="requests timed on the old value loop (0: skip)")
    ap.add_argument("--sadr", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides, name=python-literal")
    a = ap.parse_args()

    bundle = load_model(a.model)
    editor = ParametricEditor(bundle)
    cfg = replace(default_config(a.method, bundle.spec.family), **parse_sets(a.set))
    assert isinstance(cfg, MEMITConfig)
    cases = pick_cases(bundle, a.n, a.offset)
    requests = [request_of(c) for c in cases]
    # Per-model caches, computed once (not part of an edit).
    templates = context_templates(bundle, cfg.context_templates)
    editor.second_moments(sorted(cfg.layers), cfg.mom2_n_tokens)
    if isinstance(cfg, AlphaEditConfig):
        for layer in cfg.layers:
            editor.projector(layer, cfg.mom2_n_tokens, cfg.nullspace_threshold, cfg.nullspace_energy)
    loc_b = score_targets(
        bundle, [c["locality_prompt"] for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    ctx_b = score_targets(
        bundle, [locality_with_edit(c) for c in cases], [c["locality_ground_truth"] for c in cases]
    )

    out: dict = {
        "model": a.model,
        "method": a.method,
        "sadr": a.sadr,
        "edits": len(requests),
        "threads": torch.get_num_threads(),
        "templates": len(templates),
        "argmax_stop_prob": cfg.argmax_stop_prob,
        "v_lr": cfg.v_lr,
        "load_avg_start": round(os.getloadavg()[0], 2),
    }
    t0, c0 = time.perf_counter(), time.process_time()
    rec = editor.apply(requests, method=a.method, config=cfg, sadr=a.sadr)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    q = measure(bundle, cases, loc_b, ctx_b)
    editor.undo(rec)
    values = rec.info.value_runs[0]  # one batch: one value optimisation
    assert values.cpu_seconds is not None and rec.info.update_s is not None  # MEMIT/AlphaEdit record both
    rest_wall = wall - values.seconds
    out.update(
        {
            "batch_wall_s": round(wall, 1),
            "batch_cpu_s": round(cpu, 1),
            "value_wall_s": round(values.seconds, 1),
            "value_cpu_s": round(values.cpu_seconds, 1),
            "keys_solves_wall_s": round(rec.info.update_s, 1),
            "verify_wall_s": round(rec.timings["check_s"] + rec.timings["verify_s"], 1),
            "value_steps_mean": round(statistics.mean(values.request_steps), 2),
            "value_steps_max": max(values.request_steps),
            "successes": sum(v["success"] for v in rec.verification),
            **{k: round(statistics.mean(v), 4) for k, v in q.items()},
        }
    )
    if a.legacy_n:
        k = min(a.legacy_n, len(requests))
        old_cfg = replace(cfg, **OLD_VALUES)
        old_templates = context_templates(bundle, old_cfg.context_templates)
        t1, c1 = time.perf_counter(), time.process_time()
        legacy_optimise_values(
            bundle, requests[:k], old_templates, old_cfg, "residual", sorted(cfg.layers)[-1], sadr=a.sadr
        )
        lw, lc = time.perf_counter() - t1, time.process_time() - c1
        scale = len(requests) / k
        old_wall = lw * scale + rest_wall
        old_cpu_values = lc * scale
        out.update(
            {
                "old_values_requests_timed": k,
                "old_values_wall_s": round(lw, 1),
                "old_values_cpu_s": round(lc, 1),
                "old_batch_wall_s_extrapolated": round(old_wall, 1),
                "old_values_cpu_s_extrapolated": round(old_cpu_values, 1),
                "speedup_wall": round(old_wall / wall, 2),
                "speedup_values_cpu": round(old_cpu_values / values.cpu_seconds, 2),
            }
        )
    out["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
