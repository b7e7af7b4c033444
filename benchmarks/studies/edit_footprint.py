"""Disk and memory per weight edit: the records kedit keeps now (low-rank factors) against the dense records of
format 1 (dense delta per step + a pre-edit copy of every changed matrix), measured on a real model, and
extrapolated to 7B-class models from their matrix shapes.

Measured: N single AlphaEdit edits one after another (each record saved, its `tensors.safetensors` +
`record.json` counted), then one MEMIT batch of B edits; memory is what the live records hold (factors +
AlphaEdit's edited keys) plus what undo holds (`ModelBundle.history`: base copies, none when the model's
safetensors hold its base weights). The factor sizes do not depend on the value optimisation's settings,
so `--fast` (bare prompt only, no generated context templates) measures the same bytes in less time.

    python -m benchmarks.studies.edit_footprint --fast --n 10 --batch 100
    python -m benchmarks.studies.edit_footprint --fast --n 10 --batch 100 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.data.counterfact import editable_cases, request_of
from kedit.editing import ParametricEditor, default_config
from kedit.runtime import load_model

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "CounterFact" / "counterfact-val.json"
# (d_model, d_ff) of 7B-class models; edit layers as in AlphaEdit's Llama3-8B setting (5 layers)
LARGE = {"Llama-2-7B": (4096, 11008), "Mistral-7B / Llama-3-8B": (4096, 14336)}
EDIT_LAYERS = 5


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def dense_format_bytes(record, bundle) -> int:
    """What format 1 saved for `record`: a dense fp32 delta per step and a pre-edit copy per matrix."""
    numel = {n: bundle.model.get_parameter(n).numel() for n in record.changed}
    steps = sum(numel[n] for n, _ in record.steps)
    keys = sum(t.numel() for t in record.extra_tensors.values())
    return 4 * (steps + sum(numel.values()) + keys)


def per_edit(per_layer_rank: int, d: int, d_ff: int, layers: int = EDIT_LAYERS) -> dict[str, int]:
    """Bytes one AlphaEdit record of `per_layer_rank` requests holds (factors + keys) vs format 1."""
    factors = layers * per_layer_rank * (d + d_ff) * 4
    keys = layers * per_layer_rank * d_ff * 4
    return {"factored": factors + keys, "dense_format1": layers * 2 * d * d_ff * 4 + keys}


def past_keys_precision(editor, cfg) -> dict:
    """AlphaEdit's solve with the cache of past keys Σ K_pK_pᵀ (every live record's keys) summed in float32
    instead of float64: relative change of the solution for the newest record's keys, per edit layer."""
    out = {}
    newest = editor.live[-1]
    for layer in cfg.layers:
        keys = [
            r.extra_tensors[f"keys.{layer}"] for r in editor.live[:-1] if f"keys.{layer}" in r.extra_tensors
        ]
        past64 = sum(k.double() @ k.double().T for k in keys)
        past32 = sum(k.float() @ k.float().T for k in keys).double()
        k = newest.extra_tensors[f"keys.{layer}"].double()
        p = editor.projector(
            layer, cfg.mom2_n_tokens, cfg.nullspace_threshold, cfg.nullspace_energy
        ).matrix.double()
        c = editor.second_moments([layer], cfg.mom2_n_tokens)[layer].double()
        eye = cfg.l2 * torch.eye(p.shape[0], dtype=torch.float64)

        def solve(past, k=k, p=p, c=c, eye=eye):
            return torch.linalg.solve(p @ (k @ k.T + past + cfg.mom2_in_nullspace * c) + eye, p @ k)

        a, b = solve(past64), solve(past32)
        out[str(layer)] = {
            "past_keys": sum(k.shape[1] for k in keys),
            "relative_change": float((a - b).norm() / a.norm()),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--n", type=int, default=10, help="single AlphaEdit edits")
    ap.add_argument("--batch", type=int, default=100, help="MEMIT batch size (0: skip)")
    ap.add_argument("--data", type=Path, default=SAMPLE)
    ap.add_argument("--fast", action="store_true", help="bare prompt only (same bytes, less time)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    bundle = load_model(args.model, dtype=args.dtype)
    editor = ParametricEditor(bundle)
    family = bundle.spec.family

    def config(method):
        cfg = default_config(method, family)
        return replace(cfg, context_templates=()) if args.fast else cfg

    cases, _, _ = editable_cases(bundle, args.n + args.batch, args.data)
    d, d_ff = bundle.spec.d_model(bundle.model), bundle.spec.d_ff(bundle.model)
    out: dict = {"model": args.model, "dtype": str(bundle.dtype).removeprefix("torch."), "d": d, "d_ff": d_ff}
    with tempfile.TemporaryDirectory() as tmp:
        singles = []
        t0 = time.perf_counter()
        for i, case in enumerate(cases[: args.n]):
            rec = editor.apply([request_of(case)], method="alphaedit", config=config("alphaedit"))
            disk = _dir_bytes(rec.save(Path(tmp) / f"single-{i}"))
            singles.append(
                {
                    "disk": disk,
                    "memory": rec.nbytes,
                    "dense_format1": dense_format_bytes(rec, bundle),
                    "success": rec.success,
                }
            )
        out["single_seconds"] = round(time.perf_counter() - t0, 1)
        out["single"] = {
            "n": len(singles),
            "disk_bytes_per_edit": sum(s["disk"] for s in singles) / max(1, len(singles)),
            "memory_bytes_per_edit": sum(s["memory"] for s in singles) / max(1, len(singles)),
            "dense_format1_bytes_per_edit": sum(s["dense_format1"] for s in singles) / max(1, len(singles)),
            "verified": sum(s["success"] for s in singles),
            "undo_held_bytes": bundle.history.base_bytes,
        }
        if args.batch:
            batch = [request_of(c) for c in cases[args.n : args.n + args.batch]]
            rec = editor.apply(batch, method="memit", config=config("memit"))
            disk = _dir_bytes(rec.save(Path(tmp) / "batch"))
            out["batch"] = {
                "n": len(batch),
                "disk_bytes": disk,
                "memory_bytes": rec.nbytes,
                "dense_format1_bytes": dense_format_bytes(rec, bundle),
                "verified": sum(v["success"] for v in rec.verification),
            }
        out["past_keys_precision"] = past_keys_precision(editor, config("alphaedit"))
        for rec in reversed(list(editor.live)):
            editor.undo(rec)
    out["extrapolated"] = {
        name: {"single": per_edit(1, *dims), "batch_100": per_edit(100, *dims)}
        for name, dims in LARGE.items()
    }
    out["here_formula"] = per_edit(1, d, d_ff)
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--out" and a != str(args.out)]
    out["command"] = " ".join(["python -m benchmarks.studies.edit_footprint", *shown])  # no machine paths
    mb = 1e6
    s = out["single"]
    print(f"{args.model} ({out['dtype']}), d={d}, d_ff={d_ff}")
    print(
        f"single AlphaEdit edit ({s['n']}, {s['verified']} verified): disk {s['disk_bytes_per_edit'] / mb:.3f} MB, "
        f"memory {s['memory_bytes_per_edit'] / mb:.3f} MB, format 1 {s['dense_format1_bytes_per_edit'] / mb:.1f} MB; "
        f"undo holds {s['undo_held_bytes'] / mb:.1f} MB of base copies"
    )
    if "batch" in out:
        b = out["batch"]
        print(
            f"MEMIT batch of {b['n']}: disk {b['disk_bytes'] / mb:.2f} MB, memory {b['memory_bytes'] / mb:.2f} MB, "
            f"format 1 {b['dense_format1_bytes'] / mb:.1f} MB"
        )
    worst = max(v["relative_change"] for v in out["past_keys_precision"].values())
    print(
        f"AlphaEdit past-key cache summed in float32 instead of float64: solution changes by {worst:.1e} (relative, "
        f"worst layer, {next(iter(out['past_keys_precision'].values()))['past_keys']} past keys)"
    )
    for name, figs in out["extrapolated"].items():
        print(
            f"{name}: single edit {figs['single']['factored'] / mb:.2f} MB (format 1: "
            f"{figs['single']['dense_format1'] / 1e9:.2f} GB); batch of 100 {figs['batch_100']['factored'] / mb:.0f} MB"
        )
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
