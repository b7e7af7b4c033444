"""Edit quality on CounterFact: rewrite / paraphrase / neighbourhood accuracy, ± SADR, single or sequential.

Metrics are EasyEdit's teacher-forced token accuracies (kedit.scoring): rewrite = target_new after the
edit prompt, paraphrase = target_new after the rephrase prompt, neighbourhood = agreement of the
locality prompt's predicted tokens before vs after (locality). "neighbourhood+ctx" prepends the edit
sentence to the locality prompt (METHODS §4): the specificity SADR targets.

    python -m benchmarks.edit_quality --method rome --n 200
    python -m benchmarks.edit_quality --method alphaedit --n 100 --sequential --batch 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from kedit.editing import EditRequest, ParametricEditor, default_config
from kedit.paths import require_data_dir
from kedit.runtime import load_model
from kedit.scoring import score_targets, token_agreement


def load_counterfact(path: Path | None, n: int) -> list[dict]:
    path = path or require_data_dir() / "CounterFact" / "counterfact-val.json"
    records = json.loads(Path(path).read_text())
    return records[:n], str(path)


def request_of(case: dict) -> EditRequest:
    return EditRequest(case["prompt"], case["subject"], case["target_new"])


def measure(bundle, cases, locality_before, ctx_before) -> dict[str, list[float]]:
    rw = score_targets(bundle, [c["prompt"] for c in cases], [c["target_new"] for c in cases])
    para = score_targets(bundle, [c["rephrase_prompt"] for c in cases], [c["target_new"] for c in cases])
    loc = score_targets(bundle, [c["locality_prompt"] for c in cases], [c["locality_ground_truth"] for c in cases])
    ctx = score_targets(bundle, [_ctx(c) for c in cases], [c["locality_ground_truth"] for c in cases])
    return {
        "rewrite": [s.accuracy for s in rw],
        "paraphrase": [s.accuracy for s in para],
        "neighbourhood": [token_agreement(b, a) for b, a in zip(locality_before, loc)],
        "neighbourhood+ctx": [token_agreement(b, a) for b, a in zip(ctx_before, ctx)],
    }


def _ctx(case: dict) -> str:
    edit_sentence = case["prompt"].replace("{}", case["subject"]) + " " + case["target_new"] + "."
    return edit_sentence + " " + case["locality_prompt"]


def run(model: str, method: str, n: int, sadr: bool, sequential: bool, batch: int, data: Path | None) -> dict:
    bundle = load_model(model)
    editor = ParametricEditor(bundle)
    cfg = default_config(method, bundle.spec.family)
    all_cases, source = load_counterfact(data, n * 2)
    loc_before_all = score_targets(bundle, [c["locality_prompt"] for c in all_cases], [c["locality_ground_truth"] for c in all_cases])
    ctx_before_all = score_targets(bundle, [_ctx(c) for c in all_cases], [c["locality_ground_truth"] for c in all_cases])
    metrics: dict[str, list[float]] = {}
    times: list[float] = []
    skipped = 0
    used: list[tuple[dict, object, object]] = []
    pending: list[tuple[dict, object, object]] = []
    for case, lb, cb in zip(all_cases, loc_before_all, ctx_before_all):
        if len(used) + len(pending) >= n:
            break
        pending.append((case, lb, cb))
        if len(pending) < (batch if method in ("memit", "alphaedit") else 1):
            continue
        t0 = time.perf_counter()
        try:
            rec = editor.apply([request_of(c) for c, _, _ in pending], method=method, config=cfg, sadr=sadr)
        except Exception as exc:  # noqa: BLE001 - "already answered" cases are skipped, as in EasyEdit
            if "already answers" in str(exc) and len(pending) == 1:
                skipped += 1
                pending = []
                continue
            raise
        times.append(time.perf_counter() - t0)
        if not sequential:
            part = measure(bundle, [c for c, _, _ in pending], [x for _, x, _ in pending], [x for _, _, x in pending])
            for k, v in part.items():
                metrics.setdefault(k, []).extend(v)
            editor.undo(rec)
        used += pending
        pending = []
    if sequential:  # evaluate every case once, after all edits are in
        metrics = measure(bundle, [c for c, _, _ in used], [x for _, x, _ in used], [x for _, _, x in used])
        for rec in reversed(list(editor.live)):
            editor.undo(rec)
    return {
        "model": model, "method": method, "sadr": sadr, "sequential": sequential, "batch": batch,
        "cases": len(used), "skipped_already_true": skipped, "data": source,
        "median_edit_s": statistics.median(times) if times else None,
        **{k: round(statistics.mean(v), 4) for k, v in metrics.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="rome", choices=["rome", "memit", "alphaedit", "ft-l"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--sadr", action="store_true")
    ap.add_argument("--sequential", action="store_true")
    ap.add_argument("--batch", type=int, default=1, help="requests per apply() for memit/alphaedit")
    ap.add_argument("--data", type=Path, default=None)
    a = ap.parse_args()
    print(json.dumps(run(a.model, a.method, a.n, a.sadr, a.sequential, a.batch, a.data)))


if __name__ == "__main__":
    main()
