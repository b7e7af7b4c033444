"""Scope decisions on the validation files, no generation: which wordings a stored fact is in scope of.

Every case's fact is written with `KnowledgeLayer.edit_many(route="store")` into one knowledge base per
set (one fact per subject, as `benchmarks.studies.scope_bench` does), then `kl.in_scope` is asked for
each wording; a wording counts as *in* when the case's own fact is among its in-scope facts. Nothing is
generated, so a cross-encoder is compared in minutes: each `--cross` file (and the shipped one) is swapped
into the same knowledge bases in turn, with the threshold in its metadata. `any_in` counts the wordings
that some stored fact (perhaps another subject's) is in scope of.

- zsre-dev: the paraphrase (in), the subject's other relations (`Relation_Specificity` less those that ask
  the edited relation: wrongly in), the edited relation in label wording (`same_relation_labels`: in);
- counterfact-val: the edit prompt and the paraphrase (in), the synthetic same-subject other relation
  (another relation cluster's paraphrase with this subject in it: wrongly in).

    python -m benchmarks.studies.scope_decisions --n 300 --cross /path/to/candidate.safetensors

Report on these (validation) files only; nothing here is fitted or tuned on them.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from benchmarks.data.scope_data import ScopeCase, counterfact_cases, distinct_subjects, zsre_cases
from benchmarks.studies.summary_line import report
from kedit import KnowledgeLayer, load_model
from kedit.paths import require_data_dir
from kedit.scope.cross import CROSS_PATH, CrossScorer

SETS = {
    "zsre-dev": ("KnowEdit/ZsRE/ZsRE-test-dev.json", zsre_cases),
    "counterfact-val": ("CounterFact/counterfact-val.json", counterfact_cases),
}


def asks(cases: list[ScopeCase]) -> list[tuple[ScopeCase, str, str]]:
    """(case, wording, kind) for every wording a set's cases are asked with."""
    out = [(c, c.in_scope[0], "prompt") for c in cases] + [(c, c.in_scope[1], "paraphrase") for c in cases]
    out += [(c, q, "same_relation_label") for c in cases for q in c.same_relation_labels]
    out += [(c, q, "same_subject_other") for c in cases for q in c.same_subject_out]
    return out


def own_fact_in(decision, case: ScopeCase) -> bool:
    """Whether the case's stored fact is among the decision's in-scope facts (names compared with case and
    spacing folded: ZsRE's targets open with a space, "Angora goat " ends with one)."""
    want = (_fold(case.subject), _fold(case.target))
    return any((_fold(c.fact.subject), _fold(c.fact.object)) == want for c in decision.in_scope)


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def count(kl, questions: list[tuple[ScopeCase, str, str]]) -> dict[str, dict[str, int]]:
    got: dict[str, dict[str, int]] = {}
    for case, text, kind in questions:
        row = got.setdefault(kind, {"n": 0, "in": 0, "any_in": 0})
        decision = kl.in_scope(text)
        row["n"] += 1
        row["in"] += own_fact_in(decision, case)
        row["any_in"] += decision.fact is not None
    return got


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--n", type=int, default=300, help="cases (distinct subjects) per set, from its start"
    )
    parser.add_argument("--set", choices=sorted(SETS), action="append", help="default: both")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--cross", type=Path, action="append", default=[], help="a fitted cross-encoder file to compare"
    )
    parser.add_argument(
        "--threshold", type=float, action="append", default=[], help="also each --cross at this logit"
    )
    parser.add_argument("--out", type=Path, default=None, help="append the summary (JSON line) here")
    args = parser.parse_args(argv)
    root = args.data or require_data_dir()
    bundle = load_model(args.model)
    scorers = [(str(p), CrossScorer.load(p)) for p in [CROSS_PATH, *args.cross]]
    summary: dict = {"cases": args.n, "model": args.model, "sets": {}}
    for name in args.set or list(SETS):
        relative, loader = SETS[name]
        cases = distinct_subjects(loader(root / relative))[: args.n]
        questions = asks(cases)
        with tempfile.TemporaryDirectory() as tmp, KnowledgeLayer.open(tmp, model=bundle) as kl:
            for s in range(0, len(cases), 200):
                kl.edit_many(
                    [dict(prompt=c.prompt, target=c.target, subject=c.subject) for c in cases[s : s + 200]],
                    route="store",
                )
            rows = {}
            for path, scorer in scorers:
                for logit in [scorer.threshold, *(args.threshold if path != str(CROSS_PATH) else [])]:
                    t0 = time.perf_counter()
                    kl.scope.cross = scorer
                    kl.scope.threshold = 1.0 / (1.0 + math.exp(-logit))
                    key = f"{path} @ {logit:.3f}"
                    rows[key] = count(kl, questions) | {"seconds": round(time.perf_counter() - t0, 1)}
                    print(name, key, json.dumps(rows[key]), flush=True)
        summary["sets"][name] = {"file": relative, "cases": len(cases), "decisions": rows}
    report(summary, args.out)


if __name__ == "__main__":
    main()
