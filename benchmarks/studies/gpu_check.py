"""GPU check: load a model on CUDA, run ROME, a MEMIT batch and AlphaEdit through a knowledge layer, undo the
batch (the middle change), reopen, and print times, rewrite scores and whether the reopened weights are
bit-identical to those before the close.

    python -m benchmarks.studies.gpu_check --model smollm2-135m --dtype bfloat16             # CUDA, MEMIT batch of 100
    python -m benchmarks.studies.gpu_check --model /models/Llama-3-8B --dtype bfloat16
    python -m benchmarks.studies.gpu_check --device cpu --batch 4 --fast                    # dry run without a GPU

Without CUDA (and without `--device cpu`) it exits with status 2 and says so. Rewrite score: the share of
requests whose target is the teacher-forced argmax after the edit (`verification`); times are wall
seconds on the device (second-moment statistics are computed before the clock and timed on their own).
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

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "CounterFact" / "counterfact-val.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rewrite(results) -> float:
    scores = [v["after"]["accuracy"] == 1.0 for r in results for v in r.verification]
    return sum(scores) / len(scores) if scores else float("nan")


def _fast_configs() -> None:
    """Bare prompt only (no generated context templates) for every method: a quicker dry run."""
    from kedit.editing import editor as editor_module

    original = editor_module.default_config

    def fast(method, family):
        cfg = original(method, family)
        return replace(cfg, context_templates=()) if hasattr(cfg, "context_templates") else cfg

    editor_module.default_config = fast


def run(args: argparse.Namespace) -> dict:
    from benchmarks.data.counterfact import editable_cases
    from kedit import KnowledgeLayer, load_model
    from kedit.weights import EDIT

    if args.fast:
        _fast_configs()
    t0 = time.perf_counter()
    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    device = bundle.device
    out: dict = {
        "model": args.model,
        "device": str(device),
        "dtype": str(bundle.dtype).removeprefix("torch."),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_s": round(time.perf_counter() - t0, 2),
    }
    cases, _, _ = editable_cases(bundle, args.batch + 2, args.data)
    item = [dict(prompt=c["prompt"], target=c["target_new"], subject=c["subject"]) for c in cases]
    with tempfile.TemporaryDirectory() as tmp:
        kb = Path(tmp) / "kb"
        kl = KnowledgeLayer.open(kb, model=bundle)
        editor = kl.weights.editor
        t = time.perf_counter()
        for method in ("rome", "memit", "alphaedit"):  # statistics once, before the clocks
            from kedit.editing import MEMITConfig, default_config

            cfg = default_config(method, bundle.spec.family)
            layers = list(cfg.layers) if isinstance(cfg, MEMITConfig) else [cfg.layer]
            editor.second_moments(layers, cfg.mom2_n_tokens)
        _sync(device)
        out["statistics_s"] = round(time.perf_counter() - t, 2)

        def timed(label, fn):
            _sync(device)
            start = time.perf_counter()
            res = fn()
            _sync(device)
            out[label] = {
                "seconds": round(time.perf_counter() - start, 2),
                "rewrite": _rewrite(res),
                "n": sum(len(r.verification) for r in res),
            }
            return res

        rome = timed("rome", lambda: [kl.edit(**item[0], route="parametric", method="rome")])
        batch = timed(
            "memit", lambda: kl.edit_many(item[2 : 2 + args.batch], route="parametric", method="memit")
        )
        timed("alphaedit", lambda: [kl.edit(**item[1], route="parametric", method="alphaedit")])
        _sync(device)
        start = time.perf_counter()
        kl.undo(
            batch[0].id
        )  # the middle change: ROME's and AlphaEdit's matrices rebuilt, AlphaEdit re-applied
        _sync(device)
        out["undo_middle_s"] = round(time.perf_counter() - start, 2)
        names = sorted({n for c in kl.weights.changes for n in c.record.changed})
        before = {n: bundle.model.get_parameter(n).detach().clone() for n in names}
        live = [c.id for c in kl.weights.changes]
        kl.close()
        for change in reversed(list(kl.weights.changes)):  # as a new process: the base weights
            if change.kind == EDIT:
                editor.remove(change.record)
        start = time.perf_counter()
        again = KnowledgeLayer.open(kb, model=bundle)
        _sync(device)
        out["reopen_s"] = round(time.perf_counter() - start, 2)
        out["reopen_bit_identical"] = [c.id for c in again.weights.changes] == live and all(
            torch.equal(bundle.model.get_parameter(n), before[n]) for n in names
        )
        out["weights_dir_bytes"] = sum(p.stat().st_size for p in (kb / "weights").rglob("*") if p.is_file())
        out["rome_still_live"] = rome[0].edit_id in live
        for change in reversed(list(again.weights.changes)):
            again.weights.remove(change.id)
        again.close()
    if device.type == "cuda":
        out["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="embedded name, model directory or .gguf")
    ap.add_argument("--dtype", default="bfloat16", help="float32, bfloat16 or float16")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run")
    ap.add_argument("--batch", type=int, default=100, help="MEMIT batch size")
    ap.add_argument("--data", type=Path, default=SAMPLE, help="CounterFact json (default: the test sample)")
    ap.add_argument("--fast", action="store_true", help="bare prompt only (no generated context templates)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA GPU on this machine (torch {torch.__version__} sees none); run it on a GPU "
            "machine, or pass --device cpu for a dry run",
            file=sys.stderr,
        )
        return 2
    out = run(args)
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0 if out["reopen_bit_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
