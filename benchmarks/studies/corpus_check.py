"""Do the key statistics from the corpus installed with kedit match those from the benchmark text corpus?

Session 8's statistics were computed from the shared `text-corpus/` folder (gensim's Wikipedia XML excerpt,
then WikiText-2). kedit now ships the excerpt's stripped text (kedit/data). This script computes both, per
edit layer of the model's default methods, prints max |ΔC| and whether the token chunks are identical, then
applies the same CounterFact dev edits (val, the first N the model does not already answer) with each set
of statistics and prints rewrite / paraphrase / neighbourhood for both.

    python -m benchmarks.studies.corpus_check --n 50                    # SmolLM2, AlphaEdit single edits
    python -m benchmarks.studies.corpus_check --n 50 --method memit
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.data.counterfact import editable_cases, request_of
from benchmarks.scoring.counterfact import measure
from kedit.editing import ParametricEditor, default_config
from kedit.editing.corpus import bundled_corpus, corpus_from_path
from kedit.editing.covariance import compute_second_moments, corpus_chunks
from kedit.paths import require_data_dir
from kedit.runtime import load_model
from kedit.scoring import score_targets


def _quality(bundle, stats, cases, method: str) -> dict[str, float]:
    editor = ParametricEditor(bundle, statistics=stats)
    cfg = default_config(method, bundle.spec.family)
    loc_before = score_targets(
        bundle, [c["locality_prompt"] for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    ctx_before = score_targets(
        bundle,
        [
            c["prompt"].replace("{}", c["subject"]) + " " + c["target_new"] + ". " + c["locality_prompt"]
            for c in cases
        ],
        [c["locality_ground_truth"] for c in cases],
    )
    out: dict[str, list[float]] = {}
    for i, case in enumerate(cases):
        rec = editor.apply([request_of(case)], method=method, config=cfg)
        for k, v in measure(bundle, [case], [loc_before[i]], [ctx_before[i]]).items():
            out.setdefault(k, []).extend(v)
        editor.undo(rec)
    return {k: round(statistics.fmean(v), 4) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="alphaedit", choices=["rome", "memit", "alphaedit"])
    ap.add_argument("--n", type=int, default=50, help="CounterFact val edits")
    ap.add_argument("--tokens", type=int, default=None, help="statistics tokens (default: the method's)")
    a = ap.parse_args()
    bundle = load_model(a.model)
    cfg = default_config(a.method, bundle.spec.family)
    layers = sorted(getattr(cfg, "layers", None) or [cfg.layer])
    n_tokens = a.tokens or cfg.mom2_n_tokens
    shared = corpus_from_path(require_data_dir() / "text-corpus")
    bundled = bundled_corpus()
    same_chunks = corpus_chunks(bundle.tokenizer, n_tokens, corpus=shared) == corpus_chunks(
        bundle.tokenizer, n_tokens, corpus=bundled
    )
    t0 = time.perf_counter()
    old = compute_second_moments(bundle, layers, n_tokens, corpus=shared)
    new = compute_second_moments(bundle, layers, n_tokens, corpus=bundled)
    diff = {l: float((old[l] - new[l]).abs().max()) for l in layers}
    cases, _, source = editable_cases(bundle, a.n)
    q_old = _quality(bundle, old, cases, a.method)
    q_new = _quality(bundle, new, cases, a.method)
    print(
        json.dumps(
            {
                "model": a.model,
                "method": a.method,
                "layers": layers,
                "n_tokens": n_tokens,
                "corpus_digests": {"text-corpus": shared.digest, "bundled": bundled.digest},
                "identical_chunks": same_chunks,
                "max_abs_diff": diff,
                "cases": len(cases),
                "quality_text_corpus": q_old,
                "quality_bundled": q_new,
                "seconds": round(time.perf_counter() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
