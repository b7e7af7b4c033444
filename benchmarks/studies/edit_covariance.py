"""Time of the second-moment statistics C_l = E[kkᵀ] for all edit layers (issue #3: ≤ 5 min, once).

kedit's pass (`compute_second_moments`: one forward per batch for every layer, cut off after the deepest
edit layer, one float32 kᵀk matmul per batch and layer) is timed against a naive baseline measured in
the same process on the same tokens: one forward per layer, stopped after that layer (what `layer_stats`
does in the ROME/MEMIT repos), accumulated in float64, accumulated token batch by token batch. The baseline runs on `--baseline-tokens`
only (it is slow); the ratio is per token.

    python -m benchmarks.studies.edit_covariance --layers 3,4,5,6,7 --tokens 100000 --baseline-tokens 4000
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from kedit.editing.covariance import compute_second_moments, corpus_chunks, save_second_moments
from kedit.editing.tracing import PrefixBatch, hooks
from kedit.runtime import load_model


class _Stop(Exception):
    pass


@torch.no_grad()
def naive_second_moments(bundle, layers: list[int], n_tokens: int) -> tuple[dict[int, torch.Tensor], float]:
    spec, model = bundle.spec, bundle.model
    chunks = corpus_chunks(bundle.tokenizer, n_tokens)
    t0 = time.perf_counter()
    out = {}
    for layer in layers:
        total, count = None, 0
        for i in range(0, len(chunks), 16):
            batch = PrefixBatch.build(chunks[i : i + 16], [0] * len(chunks[i : i + 16]), 0)
            mask = batch.attention_mask.bool()
            found = {}

            def grab(m, a, found=found, mask=mask):
                found["k"] = a[0][mask]
                raise _Stop  # like layer_stats' Trace(stop=True): nothing after the layer runs

            try:
                with hooks([(spec.down_proj_module(model, layer), grab)], pre=True):
                    model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            except _Stop:
                pass
            k = found["k"].double()
            total = k.T @ k if total is None else total + k.T @ k
            count += k.shape[0]
        out[layer] = (total / count).float()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layers", default="3,4,5,6,7")
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--baseline-tokens", type=int, default=4000)
    ap.add_argument("--save", action="store_true", help="write the full statistics into kedit's cache")
    a = ap.parse_args()
    layers = [int(x) for x in a.layers.split(",")]
    bundle = load_model(a.model)
    res: dict = {
        "model": a.model,
        "layers": layers,
        "threads": torch.get_num_threads(),
        "load_avg": os.getloadavg(),
    }
    if a.baseline_tokens:
        naive, t_naive = naive_second_moments(bundle, layers, a.baseline_tokens)
        t0 = time.perf_counter()
        ours = compute_second_moments(bundle, layers, a.baseline_tokens)
        t_ours = time.perf_counter() - t0
        err = max(float((ours[l] - naive[l]).abs().max() / naive[l].abs().max()) for l in layers)
        res.update(
            {
                "baseline_tokens": a.baseline_tokens,
                "naive_s": round(t_naive, 2),
                "kedit_s": round(t_ours, 2),
                "speedup": round(t_naive / t_ours, 2),
                "max_rel_diff": err,
            }
        )
    t0 = time.perf_counter()
    full = compute_second_moments(bundle, layers, a.tokens)
    res.update(
        {
            "tokens": a.tokens,
            "kedit_full_s": round(time.perf_counter() - t0, 1),
            "load_avg_end": os.getloadavg(),
        }
    )
    if a.save:  # the editors then load these instead of computing them again
        res["saved"] = str(save_second_moments(bundle, a.tokens, full))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
