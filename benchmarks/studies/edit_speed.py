"""Speed of the value optimisation (the dominant cost of ROME/MEMIT) against a naive baseline run in
the same process: the naive step is a full forward+backward of every templated prompt through all
layers with logits at every position (what EasyEdit does); kedit's step reuses the prefix KV cache,
runs only the layers from the edit layer up, on the positions from subject_last on, and computes
logits only at the target positions. Both run the same number of steps (early stop off), so the ratio
is per step. CPU seconds (process time) are printed beside wall seconds: on this shared machine
the wall clock mostly measures the other engineers' load. The full ROME edit time (default config: early stop, before/after verification) is printed
too and, with --baseline, the pre-speed-work default (21 templates, loss-only stop) on the same cases in
the same process, with the ratio; with --legacy, the same default config on the value loop as it was before
the batched/bucketed rewrite (benchmarks/legacy/values.py), same cases, same process; with --fp32, the
default config with fp32 value products (value_dtype='float32'; the default 'auto' is bf16 on CPUs that
multiply bf16 natively), interleaved per case.

    python -m benchmarks.studies.edit_speed --n 30 --steps 0 --fp32
    python -m benchmarks.studies.edit_speed --n 10 --steps 0 --legacy
    python -m benchmarks.studies.edit_speed --n 10 --baseline
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace

import torch

from benchmarks.data.counterfact import load_counterfact, request_of
from benchmarks.legacy.values import legacy_optimise_values
from kedit.editing import ParametricEditor, default_config
from kedit.editing import rome as rome_module
from kedit.editing.keys import build_rows, pad_id, target_ids
from kedit.editing.templates import context_templates
from kedit.editing.tracing import PrefixBatch, hooks
from kedit.editing.values import optimise_values
from kedit.runtime import load_model


def naive_steps(bundle, request, templates, cfg, steps: int) -> float:
    """EasyEdit-style: full model, all positions' logits, δ hooked into the MLP output."""
    tok, spec, model = bundle.tokenizer, bundle.spec, bundle.model
    rows = build_rows(tok, [request], templates, target=True)
    batch = PrefixBatch.build([list(r.ids) for r in rows], [0] * len(rows), pad_id(tok))
    y = target_ids(tok, request.target)
    delta = torch.zeros(spec.d_model(model), requires_grad=True)
    opt = torch.optim.Adam([delta], lr=cfg.v_lr)
    cols = torch.tensor([[r.n_prompt - 1 + j for j in range(len(y))] for r in rows])
    subj = torch.tensor([r.subject_col for r in rows])

    def inject(m, a, o):
        add = torch.zeros_like(o)
        add[torch.arange(len(rows)), subj] = delta
        return o + add

    t0 = time.perf_counter()
    for _ in range(steps):
        with hooks([(spec.down_proj_module(model, cfg.layer), inject)]):
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        lp = torch.log_softmax(logits, -1)[torch.arange(len(rows))[:, None], cols]
        loss = -lp.gather(2, torch.tensor(y).expand(len(rows), -1)[..., None]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


# The ROME default before the speed work (issue #3 baseline): 21 templates, stop only on loss < 0.05.
OLD_ROME = {"context_templates": ((5, 10), (10, 10)), "argmax_stop_prob": 0.0}


def _rome_times(editor, cases, cfg) -> tuple[list[float], list[float], list[int], list[float]]:
    """Wall seconds, rewrite accuracies, value steps and CPU seconds (process time) per edit."""
    times, accs, steps, cpu = [], [], [], []
    for case in cases:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            rec = editor.apply([request_of(case)], method="rome", config=cfg)
        except Exception:  # noqa: BLE001 - already-true cases are not edits
            continue
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        accs.append(rec.verification[0]["after"]["accuracy"])
        steps.append(rec.info.value_runs[0].steps)
        editor.undo(rec)
    return times, accs, steps, cpu


def editor_dtype(cfg, bundle) -> str:
    from kedit.editing.precision import resolve_value_dtype

    return str(resolve_value_dtype(cfg.value_dtype, bundle.device)).removeprefix("torch.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument(
        "--steps", type=int, default=5, help="fixed steps of the per-step comparison (0: skip it)"
    )
    ap.add_argument(
        "--baseline", action="store_true", help="also time the pre-speed-work ROME default (slow)"
    )
    ap.add_argument(
        "--legacy", action="store_true", help="also time the default config on the old value loop"
    )
    ap.add_argument(
        "--fp32",
        action="store_true",
        help="also time the default config with fp32 value products (value_dtype='float32'), interleaved per case",
    )
    a = ap.parse_args()
    bundle = load_model(a.model)
    cfg = default_config("rome", bundle.spec.family)
    templates = context_templates(bundle, cfg.context_templates)
    cases, _ = load_counterfact(None, a.n)
    editor = ParametricEditor(bundle)
    out: dict = {"model": a.model, "threads": torch.get_num_threads(), "load_avg_start": os.getloadavg()[0]}
    if a.steps:
        fixed = replace(cfg, v_num_grad_steps=a.steps, loss_stop=-1.0, argmax_stop_prob=0.0)
        ours, naive = [], []
        for case in cases:
            req = request_of(case)
            t0 = time.perf_counter()
            optimise_values(bundle, [req], templates, fixed, "mlp", cfg.layer, key_layers=[cfg.layer])
            ours.append(time.perf_counter() - t0)
            naive.append(naive_steps(bundle, req, templates, cfg, a.steps))
        out.update(
            {
                "templates": len(templates),
                "steps": a.steps,
                "kedit_values_median_s": round(statistics.median(ours), 3),
                "naive_values_median_s": round(statistics.median(naive), 3),
                "per_step_speedup": round(statistics.median(naive) / statistics.median(ours), 2),
            }
        )
    if a.fp32:  # interleaved per case, so a change of load hits both configs alike
        f32 = replace(cfg, value_dtype="float32")
        pairs = [(_rome_times(editor, [c], cfg), _rome_times(editor, [c], f32)) for c in cases]
        pairs = [(d, f) for d, f in pairs if d[0] and f[0]]
        times, accs, steps, cpu = (sum((d[i] for d, _ in pairs), []) for i in range(4))
        f_times, f_accs, f_steps, f_cpu = (sum((f[i] for _, f in pairs), []) for i in range(4))
        out.update(
            {
                "fp32_rome_edit_median_s": round(statistics.median(f_times), 3) if f_times else None,
                "fp32_rome_edit_median_cpu_s": round(statistics.median(f_cpu), 3) if f_cpu else None,
                "fp32_rewrite_acc": round(statistics.mean(f_accs), 3) if f_accs else None,
                "fp32_value_steps": f_steps,
                "speedup_vs_fp32_wall": round(statistics.median(f_times) / statistics.median(times), 2)
                if times
                else None,
                "speedup_vs_fp32_cpu": round(statistics.median(f_cpu) / statistics.median(cpu), 2)
                if cpu
                else None,
            }
        )
    else:
        times, accs, steps, cpu = _rome_times(editor, cases, cfg)
    out["value_dtype"] = editor_dtype(cfg, bundle)
    out.update(
        {
            "rome_edit_median_s": round(statistics.median(times), 3) if times else None,
            "edits": len(times),
            "rome_edit_median_cpu_s": round(statistics.median(cpu), 3) if cpu else None,
            "rome_rewrite_acc": round(statistics.mean(accs), 3) if accs else None,
            "rome_value_steps": steps,
        }
    )
    if a.legacy:
        current = rome_module.optimise_values
        rome_module.optimise_values = legacy_optimise_values
        try:
            l_times, l_accs, l_steps, l_cpu = _rome_times(editor, cases, cfg)
        finally:
            rome_module.optimise_values = current
        out.update(
            {
                "legacy_loop_rome_edit_median_s": round(statistics.median(l_times), 3) if l_times else None,
                "legacy_loop_rome_edit_median_cpu_s": round(statistics.median(l_cpu), 3) if l_cpu else None,
                "legacy_loop_rewrite_acc": round(statistics.mean(l_accs), 3) if l_accs else None,
                "legacy_loop_value_steps": l_steps,
                "speedup_vs_legacy_loop_wall": round(statistics.median(l_times) / statistics.median(times), 2)
                if l_times and times
                else None,
                "speedup_vs_legacy_loop_cpu": round(statistics.median(l_cpu) / statistics.median(cpu), 2)
                if l_cpu and cpu
                else None,
            }
        )
    if a.baseline:
        old = replace(cfg, **OLD_ROME)
        b_times, b_accs, b_steps, b_cpu = _rome_times(editor, cases, old)
        out.update(
            {
                "baseline_rome_edit_median_s": round(statistics.median(b_times), 3) if b_times else None,
                "baseline_rome_edit_median_cpu_s": round(statistics.median(b_cpu), 3) if b_cpu else None,
                "baseline_rewrite_acc": round(statistics.mean(b_accs), 3) if b_accs else None,
                "baseline_value_steps": b_steps,
                "rome_speedup": round(statistics.median(b_times) / statistics.median(times), 2)
                if b_times and times
                else None,
            }
        )
    out["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
