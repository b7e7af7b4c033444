"""Fit the scope head (kedit/scope/scope_head.json) and measure the relation join threshold, on train files.

The scope head says whether a subject-masked input asks for the relation a subject-masked template
expresses. It is a logistic regression (scikit-learn, the `bench` extra) over the MiniLM vectors of
the pair, SBERT's pair features [q*t, |q-t|, q.t] (769 numbers): a bare cosine cannot tell "X, in"
from "X is a twin city of" (AUC 0.80 on CounterFact-train), the fitted head can (0.95 held out).

Pairs: counterfact-train (the edit prompt vs its paraphrase: in scope; vs a paraphrase of another
relation cluster with this subject: out, see benchmarks/data/scope_data.py) and zsRE-MEND train (question
vs its rephrasing: in; vs another record's question: out). The threshold is the one that keeps
`--recall` of the in-scope training pairs. The join threshold is the lowest template cosine at which
two CounterFact-train templates are of one relation cluster in >= 99% of pairs.

    python -m benchmarks.studies.scope_calibrate            # writes kedit/scope/scope_head.json

Report the head on the validation files with `python -m benchmarks.studies.scope_bench`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from benchmarks.data.scope_data import ScopeCase, counterfact_cases, distinct_subjects, zsre_mend_cases
from kedit.paths import require_data_dir
from kedit.runtime.embeddings import default_embedder
from kedit.scope.head import HEAD_PATH, pair_features
from kedit.scope.text import masked, masked_template

CF_TRAIN = "CounterFact/counterfact-train.json"
MEND_TRAIN = "zsRE-MEND/zsre_mend_train-1k.json"


def _masked(text: str, subject: str) -> str:
    at = text.find(subject)
    return masked(text, at, at + len(subject))


def training_pairs(cases: list[ScopeCase], extra_negatives: int, seed: int) -> list[tuple[str, str, int]]:
    """(template, query, label): each case's paraphrases (1) and same-subject other relations (0), plus
    `extra_negatives` paraphrases of other cases' relations per case (another cluster or template)."""
    rng = random.Random(seed)
    pairs = []
    for c in cases:
        template = _masked(c.prompt, c.subject)
        pairs += [(template, _masked(q, c.subject), 1) for q in c.in_scope[1:]]
        pairs += [(template, _masked(q, c.subject), 0) for q in c.same_subject_out]
        for _ in range(extra_negatives):
            o = cases[rng.randrange(len(cases))]
            if (o.cluster and o.cluster == c.cluster) or _masked(o.prompt, o.subject) == template:
                continue
            pairs.append((template, _masked(o.in_scope[1], o.subject), 0))
    return pairs


def join_threshold(embedder, cases: list[ScopeCase], precision: float = 0.99) -> tuple[float, list]:
    """The lowest cosine at which distinct CounterFact templates share a cluster in >= `precision` of pairs."""
    by_template = {masked_template(c.prompt.replace(c.subject, "{}", 1)): c.cluster for c in cases if c.cluster}
    texts = sorted(by_template)
    vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
    iu = np.triu_indices(len(texts), 1)
    same = np.array([by_template[texts[i]] == by_template[texts[j]] for i, j in zip(*iu)])
    scores = (vectors @ vectors.T)[iu]
    table, chosen = [], None
    for t in np.arange(0.70, 1.0001, 0.02):
        picked = scores >= t
        share = float(same[picked].mean()) if picked.any() else 1.0
        table.append((round(float(t), 2), int(picked.sum()), round(share, 3)))
        if chosen is None and share >= precision:
            chosen = round(float(t), 2)
    return chosen or 1.0, table


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--cf", type=int, default=4000, help="counterfact-train cases (distinct subjects)")
    parser.add_argument("--recall", type=float, default=0.97)
    parser.add_argument("--c", type=float, default=10.0, help="inverse L2 strength of the regression")
    parser.add_argument("--out", type=Path, default=HEAD_PATH)
    args = parser.parse_args(argv)
    root = args.data or require_data_dir()
    t0 = time.perf_counter()
    embedder = default_embedder()
    cf_all = counterfact_cases(root / CF_TRAIN)
    cf = distinct_subjects(cf_all)[: args.cf]
    mend = zsre_mend_cases(root / MEND_TRAIN)
    join, table = join_threshold(embedder, cf_all)
    print(f"join threshold (>= 99% same relation on CounterFact-train template pairs): {join}")
    for t, n, share in table:
        print(f"  cos >= {t:.2f}: {n:5d} pairs, same relation {share:.3f}")
    pairs = training_pairs(cf, 2, seed=1) + training_pairs(mend, 3, seed=2)
    templates = np.asarray(embedder.encode([p[0] for p in pairs]), dtype=np.float32)
    queries = np.asarray(embedder.encode([p[1] for p in pairs]), dtype=np.float32)
    x, y = pair_features(queries, templates), np.asarray([p[2] for p in pairs])
    model = LogisticRegression(C=args.c, max_iter=5000).fit(x, y)
    score = model.decision_function(x)
    positives = np.sort(score[y == 1])
    threshold = float(positives[int((1 - args.recall) * len(positives))])
    kept_out = float(np.mean(score[y == 0] < threshold))
    head = {
        "format": 1,
        "features": "MiniLM all-MiniLM-L6-v2 vectors q (masked input), t (masked template): [q*t, |q-t|, q.t]",
        "weights": [round(float(w), 6) for w in model.coef_[0]],
        "bias": round(float(model.intercept_[0]), 6),
        "threshold": round(threshold, 6),
        "join_similarity": join,
        "fitted_on": {"files": [CF_TRAIN, MEND_TRAIN], "counterfact_cases": len(cf), "zsre_mend_cases": len(mend),
                      "pairs": len(y), "in_scope_pairs": int(y.sum()), "C": args.c, "recall_target": args.recall},
        "train": {"auc": round(float(roc_auc_score(y, score)), 4), "recall": round(float(np.mean(score[y == 1] >= threshold)), 4),
                  "kept_out": round(kept_out, 4)},
    }
    args.out.write_text(json.dumps(head) + "\n", encoding="utf-8")
    print(f"{len(y)} pairs ({int(y.sum())} in scope); train AUC {head['train']['auc']}, recall "
          f"{head['train']['recall']}, other relations kept out {head['train']['kept_out']}; threshold "
          f"{threshold:.3f}; {time.perf_counter() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
