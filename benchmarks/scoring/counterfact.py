"""The CounterFact edit-quality metrics of the editing studies: EasyEdit's teacher-forced token accuracies
(rewrite, paraphrase) and locality agreement (neighbourhood, and neighbourhood after the edit sentence)."""

from __future__ import annotations

from benchmarks.data.counterfact import locality_with_edit
from kedit.scoring import score_targets, token_agreement

METRICS = ("rewrite", "paraphrase", "neighbourhood", "neighbourhood+ctx")


def measure(bundle, cases, locality_before, ctx_before) -> dict[str, list[float]]:
    """Per-case metric values of `cases` on the (edited) `bundle`, locality against the pre-edit scores
    `locality_before` (locality prompts) and `ctx_before` (`locality_with_edit` prompts)."""
    rw = score_targets(bundle, [c["prompt"] for c in cases], [c["target_new"] for c in cases])
    para = score_targets(bundle, [c["rephrase_prompt"] for c in cases], [c["target_new"] for c in cases])
    loc = score_targets(
        bundle, [c["locality_prompt"] for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    ctx = score_targets(
        bundle, [locality_with_edit(c) for c in cases], [c["locality_ground_truth"] for c in cases]
    )
    return {
        "rewrite": [s.accuracy for s in rw],
        "paraphrase": [s.accuracy for s in para],
        "neighbourhood": [token_agreement(b, a) for b, a in zip(locality_before, loc)],
        "neighbourhood+ctx": [token_agreement(b, a) for b, a in zip(ctx_before, ctx)],
    }
