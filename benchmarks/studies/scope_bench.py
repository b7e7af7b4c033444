"""Scope on held-out wordings: a stored fact answers its paraphrases, and nothing else changes.

Stores every case's fact (one per subject) through `KnowledgeLayer.edit_many(route="store")`, then asks
`KnowledgeLayer.query_many`:
- the edit prompt and the paraphrase: answered with the stored target (the answer starts with it);
- the neighbourhood prompt (another subject) and, on ZsRE, the subject's other relation
  (`Relation_Specificity`): answered exactly as a knowledge base with nothing stored answers them;
- on ZsRE, the `Relation_Specificity` prompts that ask the edited relation itself (their answer is the
  edit's old one: `ScopeCase.same_relation_labels`): answered with the stored target
  (`same_relation_label`), since the fact they ask for was changed.

    python -m benchmarks.studies.scope_bench --set counterfact-val --n 300
    python -m benchmarks.studies.scope_bench --set zsre-dev --n 300
    python -m benchmarks.studies.scope_bench --set counterfact-val --n 100 --route router   # weights and store

Report on these (validation) files only; the scope model is fitted on the train files
(`benchmarks.studies.scope_calibrate`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.data.scope_data import ScopeCase, counterfact_cases, distinct_subjects, zsre_cases
from benchmarks.studies.summary_line import report
from kedit import KnowledgeLayer, load_model
from kedit.paths import require_data_dir

SETS = {
    "counterfact-val": ("CounterFact/counterfact-val.json", counterfact_cases),
    "zsre-dev": ("KnowEdit/ZsRE/ZsRE-test-dev.json", zsre_cases),
}


def _norm(text: str | None) -> str:
    folded = " ".join((text or "").casefold().split()).strip(" .,;:'\"")
    return folded[4:] if folded.startswith("the ") else folded


def answered(answer: str | None, target: str) -> bool:
    """The answer is the target (an answer that starts with it, as a word, counts)."""
    a, t = _norm(answer), _norm(target)
    return bool(t) and (a == t or a.startswith(t + " ") or a.startswith(t + ","))


def run(cases: list[ScopeCase], model: str, batch: int = 64, route: str | None = "store") -> dict:
    bundle = load_model(model)
    rows: dict[str, list[bool]] = {
        "prompt": [],
        "paraphrase": [],
        "other_subject": [],
        "same_subject_other": [],
        "same_relation_label": [],
    }
    t0 = time.perf_counter()
    asks = [(c, c.in_scope[0], "prompt") for c in cases] + [(c, c.in_scope[1], "paraphrase") for c in cases]
    asks += [(c, q, "same_relation_label") for c in cases for q in c.same_relation_labels]
    outs = [(c, q, "other_subject") for c in cases for q in c.other_subject]
    outs += [(c, q, "same_subject_other") for c in cases for q in c.same_subject_out]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        # the baseline first: with weight edits (route "router") the shared model changes afterwards
        with KnowledgeLayer.open(b, model=bundle) as empty:
            want = [
                w
                for s in range(0, len(outs), batch)
                for w in empty.query_many([q for _, q, _ in outs[s : s + batch]])
            ]
        t_base = time.perf_counter() - t0
        with KnowledgeLayer.open(a, model=bundle) as kl:
            routes: dict[str, int] = {}
            for start in range(0, len(cases), 200):
                chunk = cases[start : start + 200]
                for result in kl.edit_many(
                    [dict(prompt=c.prompt, target=c.target, subject=c.subject) for c in chunk], route=route
                ):
                    routes[result.route.value] = routes.get(result.route.value, 0) + 1
            weight_edits, drift = len(kl.weights.changes), kl.locality_drift
            t_store = time.perf_counter() - t0 - t_base
            t1 = time.perf_counter()
            for s in range(0, len(asks), batch):
                part = asks[s : s + batch]
                for (c, _, kind), ans in zip(part, kl.query_many([q for _, q, _ in part])):
                    rows[kind].append(answered(ans.text, c.target))
            t_in = time.perf_counter() - t1
            got = [
                g
                for s in range(0, len(outs), batch)
                for g in kl.query_many([q for _, q, _ in outs[s : s + batch]])
            ]
            for (_, _, kind), g, w in zip(outs, got, want):
                rows[kind].append(_norm(g.text) == _norm(w.text))
            for change in reversed(list(kl.weights.changes)):  # leave the shared model as it was
                kl.weights.remove(change.id)
    summary: dict[str, Any] = {
        k: {"n": len(v), "rate": round(sum(v) / len(v), 4) if v else None} for k, v in rows.items()
    }
    summary["routes"] = routes
    summary["weight_edits"], summary["locality_drift"] = weight_edits, round(drift, 4)
    summary["seconds"] = {
        "baseline": round(t_base, 1),
        "store": round(t_store, 1),
        "in_scope_queries": round(t_in, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), required=True)
    parser.add_argument("--n", type=int, default=300, help="cases (distinct subjects), from the file's start")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--route",
        choices=("store", "router"),
        default="store",
        help="write the facts to the store, or let the router choose (weights, store or both)",
    )
    parser.add_argument("--out", type=Path, default=None, help="append the summary (JSON line) here")
    args = parser.parse_args(argv)
    relative, loader = SETS[args.set]
    cases = distinct_subjects(loader((args.data or require_data_dir()) / relative))[: args.n]
    summary = {
        "set": args.set,
        "file": relative,
        "cases": len(cases),
        "model": args.model,
        "route": args.route,
    } | run(cases, args.model, route=None if args.route == "router" else "store")
    report(summary, args.out)


if __name__ == "__main__":
    main()
