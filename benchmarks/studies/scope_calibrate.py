"""Fit the scope head (kedit/scope/scope_head.json) and measure the relation join threshold, on train files.

The scope head says whether a subject-masked input asks for the relation a subject-masked template
expresses: a one-hidden-layer perceptron (scikit-learn, the `bench` extra; 32 ReLU units) over the MiniLM
vectors of the pair, SBERT's pair features [q*t, |q-t|, q.t], and three word-overlap features (kedit/scope/
head.py). A bare cosine cannot tell "X, in" from "X is a twin city of" (AUC 0.80 on CounterFact-train); a
logistic regression over the same features kept only 88 % of unrelated relation-label wordings ("X taxon
rank" against "Which family does X belong to?", the form of ZsRE's other relations) out of scope on
held-out zsRE-MEND train cases, at 97.5 % of their rephrasings in; the perceptron keeps 97 % out at 95.5 %.

Pairs (template, query, label):
- counterfact-train (4,000 subjects): the edit prompt vs its paraphrase (in); vs a paraphrase of another
  relation cluster with this subject (out, see benchmarks/data/scope_data.py); vs relation-label wordings;
- zsRE-MEND train (the first 798 records): question vs its rephrasing (in); vs another record's question
  and vs relation-label wordings that share no content word with it (out);
- KnowEdit WikiData train (wiki_counterfact, wiki_recent): the edit prompt vs the subject's other
  relations (`Relation_Specificity`), in both label wordings ("The founder of X is", "X founder"): out;
- the curated relations: a relation's question and cloze vs its own label wordings (in) and vs other
  relations' (out);
- for the cross-encoder (`n_held_wiki`), hard negatives: label wordings sharing a word or topic with a
  template whose relation is known to differ (benchmarks/studies/scope_hard.py); and (`same_weight`)
  same-relation pairs in label and relative-clause wording (benchmarks/studies/scope_same.py).
The threshold keeps `--recall` of the paraphrases of held-out train cases (counterfact-train subjects
4,000-4,499 and the last 200 zsRE-MEND records), which the head is not fitted on. The join threshold is
the lowest template cosine at which two CounterFact-train templates are of one relation cluster in >= 99%
of pairs.

    python -m benchmarks.studies.scope_calibrate            # writes kedit/scope/scope_head.json

The same pairs (`build_pairs`) fit the second stage, the cross-encoder (`benchmarks.studies.scope_cross`).

Report the head on the validation files with `python -m benchmarks.studies.scope_bench`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.data.scope_data import (
    ScopeCase,
    counterfact_cases,
    distinct_subjects,
    knowedit_wiki_cases,
    short_label_form,
    zsre_mend_cases,
)
from benchmarks.studies.scope_hard import hard_pairs, label_forms, masked_prompt, wiki_labels
from benchmarks.studies.scope_same import reasoning_pairs, same_pairs
from kedit.paths import require_data_dir
from kedit.runtime.embeddings import default_embedder
from kedit.scope.head import FORMAT, HEAD_PATH, ScopeHead, content_stems, head_features
from kedit.scope.text import masked_template
from memory import RelationVocabulary

CF_TRAIN = "CounterFact/counterfact-train.json"
MEND_TRAIN = "zsRE-MEND/zsre_mend_train-1k.json"
WIKI_TRAIN = ("KnowEdit/wiki_counterfact/train_cf-dev.json", "KnowEdit/wiki_recent/recent_train-dev.json")


def training_pairs(
    cases: list[ScopeCase],
    extra_negatives: int,
    seed: int,
    wordings: list[str] = (),
    label_negatives: int = 0,
) -> list[tuple[str, str, int, str]]:
    """(template, query, label, kind): each case's paraphrases (1, "paraphrase") and same-subject other
    relations (0, "other"), `extra_negatives` paraphrases of other cases' relations per case (0, "other"),
    and `label_negatives` masked relation-label wordings (`wordings`) that share no content word with the
    case's template (0, "label"; one sharing a word may name the case's own relation, so it is left out).
    A case's own same-subject other relations that have a short label form add it (0, "other")."""
    rng = random.Random(seed)
    pairs = []
    for c in cases:
        template = masked_prompt(c.prompt, c.subject)
        pairs += [(template, masked_prompt(q, c.subject), 1, "paraphrase") for q in c.in_scope[1:]]
        for q in c.same_subject_out:
            other = masked_prompt(q, c.subject)
            pairs.append((template, other, 0, "other"))
            if (short := short_label_form(other)) is not None:
                pairs.append((template, short, 0, "other"))
        for _ in range(extra_negatives):
            o = cases[rng.randrange(len(cases))]
            if (o.cluster and o.cluster == c.cluster) or masked_prompt(o.prompt, o.subject) == template:
                continue
            pairs.append((template, masked_prompt(o.in_scope[1], o.subject), 0, "other"))
        stems = content_stems(template)
        for _ in range(label_negatives):
            wording = wordings[rng.randrange(len(wordings))]
            if not content_stems(wording) & stems:
                pairs.append((template, wording, 0, "label"))
    return pairs


def label_wordings(cases: list[ScopeCase], relations) -> list[str]:
    """Masked relation-label wordings: the KnowEdit WikiData train prompts of `cases` (edit and other
    relations), each with its short form, and the curated relations' labels in both forms."""
    found = [masked_prompt(q, c.subject) for c in cases for q in (c.prompt, *c.same_subject_out)]
    found += [short for w in list(found) if (short := short_label_form(w)) is not None]
    found += [form for r in relations if r.label for form in label_forms(r.label)]
    return sorted(set(found))


def relation_pairs(relations, others: int, seed: int) -> list[tuple[str, str, int, str]]:
    """Pairs from the curated relations (their ids are known): a relation's question and cloze against its
    own label wordings and each other (1, "relation"), and against `others` other relations' label
    wordings and question (0, "relation_other")."""
    rng = random.Random(seed)
    rels = [r for r in relations if r.label]
    pairs = []
    for r in rels:
        own = [masked_template(r.question), masked_template(r.cloze)]
        pairs += [(t, f, 1, "relation") for t in own for f in label_forms(r.label)]
        pairs += [(own[0], own[1], 1, "relation"), (own[1], own[0], 1, "relation")]
        for o in rng.sample([o for o in rels if o.id != r.id], min(others, len(rels) - 1)):
            pairs += [(t, f, 0, "relation_other") for t in own for f in label_forms(o.label)]
            pairs.append((own[0], masked_template(o.question), 0, "relation_other"))
    return pairs


def join_threshold(embedder, cases: list[ScopeCase], precision: float = 0.99) -> tuple[float, list]:
    """The lowest cosine at which distinct CounterFact templates share a cluster in >= `precision` of pairs."""
    by_template = {
        masked_template(c.prompt.replace(c.subject, "{}", 1)): c.cluster for c in cases if c.cluster
    }
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


def _features(embedder, pairs: list[tuple[str, str, int, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    templates = np.asarray(embedder.encode([p[0] for p in pairs]), dtype=np.float32)
    queries = np.asarray(embedder.encode([p[1] for p in pairs]), dtype=np.float32)
    x = head_features(queries, templates, [p[1] for p in pairs], [p[0] for p in pairs])
    return x, np.asarray([p[2] for p in pairs]), np.asarray([p[3] for p in pairs])


def hard_split(root: Path, n_held_wiki: int, embedder=None) -> tuple[list, list, int]:
    """(fitted hard negatives, held-out hard negatives, how many WikiData train cases are fitted on): the
    pairs of `benchmarks.studies.scope_hard`, the last `n_held_wiki` WikiData cases held out."""
    relations = list(RelationVocabulary.builtin())
    wiki = [c for f in WIKI_TRAIN for c in knowedit_wiki_cases(root / f)]
    labels, embedder, n_fit = wiki_labels(wiki), embedder or default_embedder(), len(wiki) - n_held_wiki
    fitted = hard_pairs(wiki[:n_fit], relations, labels, embedder, seed=7)
    return fitted, hard_pairs(wiki[n_fit:], (), labels, embedder, seed=8), n_fit


def weighted_same(same: list, pairs: list, most: int, share: float = 0.5) -> list:
    """`same` with each in-scope pair repeated so that a wording's in-scope pairs come to about `share` of
    its out-of-scope ones in `pairs` (at most `most` copies): "The occupation of X is" is out of scope in
    1,536 fitted pairs and in scope in 15 of `same`."""
    out_of_scope: Counter[str] = Counter(w for p in pairs if p[2] == 0 for w in p[:2])
    in_scope: Counter[str] = Counter(w for p in same if p[2] == 1 for w in p[:2])
    weighted = []
    for p in same:
        copies = max(share * out_of_scope[w] / in_scope[w] for w in p[:2]) if p[2] == 1 else 1
        weighted += [p] * max(1, min(most, round(copies)))
    return weighted


def build_pairs(
    root: Path,
    n_cf: int = 4000,
    n_held_cf: int = 500,
    n_held_mend: int = 200,
    relation_weight: int = 5,
    n_held_wiki: int | None = None,
    same_weight: int = 0,
) -> tuple[list, list, int]:
    """(fitted pairs, held-out pairs, how many of the held-out pairs, at the end, are zsRE-MEND's): the pairs
    of the module docstring, from the train files under `root` (the scope head's and the cross-encoder's).
    With `n_held_wiki`, the fitted pairs add the hard negatives of `hard_split` and leave out the last
    `n_held_wiki` WikiData train cases (their hard negatives are `hard_split`'s held-out ones). With
    `same_weight`, the same-relation pairs in label and relative-clause wording of
    `benchmarks.studies.scope_same` (from the fitted WikiData cases and the curated relations), their
    in-scope pairs repeated up to `same_weight` times (`weighted_same`)."""
    cf_distinct = distinct_subjects(counterfact_cases(root / CF_TRAIN))
    cf, held_cf = cf_distinct[:n_cf], cf_distinct[n_cf : n_cf + n_held_cf]
    mend = zsre_mend_cases(root / MEND_TRAIN)
    fit_mend, held_mend = mend[: len(mend) - n_held_mend], mend[len(mend) - n_held_mend :]
    relations = list(RelationVocabulary.builtin())
    wiki = [c for f in WIKI_TRAIN for c in knowedit_wiki_cases(root / f)]
    wordings = label_wordings(wiki, relations)
    hard, n_wiki = ([], len(wiki)) if n_held_wiki is None else hard_split(root, n_held_wiki)[::2]
    pairs = (
        training_pairs(cf, 2, seed=1, wordings=wordings, label_negatives=2)
        + training_pairs(fit_mend, 3, seed=2, wordings=wordings, label_negatives=6)
        + training_pairs(wiki[:n_wiki], 0, seed=5)
        + relation_pairs(relations, 6, seed=3)
        + hard
    )
    pairs += [p for p in pairs if p[3] == "relation"] * (relation_weight - 1)
    if same_weight:
        keep = {(c.subject, c.prompt) for c in wiki[:n_wiki]}
        same = same_pairs(wiki[:n_wiki], relations)
        same += [p for f in WIKI_TRAIN for p in reasoning_pairs(root / f, keep)]
        pairs += weighted_same(same, pairs, same_weight)
    # held-out train cases, never fitted on: the threshold's
    held_cf_pairs = training_pairs(held_cf, 2, seed=6, wordings=wordings, label_negatives=2)
    held_mend_pairs = training_pairs(held_mend, 3, seed=4, wordings=wordings, label_negatives=6)
    return pairs, held_cf_pairs + held_mend_pairs, len(held_mend_pairs)


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument(
        "--cf", type=int, default=4000, help="counterfact-train cases (distinct subjects) fitted on"
    )
    parser.add_argument(
        "--held-cf", type=int, default=500, help="further counterfact-train cases: the threshold's"
    )
    parser.add_argument(
        "--held-mend", type=int, default=200, help="zsRE-MEND train cases kept for the threshold"
    )
    parser.add_argument(
        "--recall", type=float, default=0.96, help="share of held-out paraphrases kept in scope"
    )
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the head")
    parser.add_argument("--alpha", type=float, default=1e-3, help="L2 strength of the head")
    parser.add_argument(
        "--relation-weight",
        type=int,
        default=5,
        help="copies of the curated relations' in-scope pairs (few, and the only label-form positives)",
    )
    parser.add_argument("--out", type=Path, default=HEAD_PATH)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    embedder = default_embedder()
    root = args.data or require_data_dir()
    join, table = join_threshold(embedder, counterfact_cases(root / CF_TRAIN))
    print(f"join threshold (>= 99% same relation on CounterFact-train template pairs): {join}")
    for t, n, share in table:
        print(f"  cos >= {t:.2f}: {n:5d} pairs, same relation {share:.3f}")
    pairs, held, n_held_mend = build_pairs(root, args.cf, args.held_cf, args.held_mend, args.relation_weight)
    x, y, kinds = _features(embedder, pairs)
    model = MLPClassifier(
        (args.hidden,), alpha=args.alpha, max_iter=60, early_stopping=True, random_state=0
    ).fit(x, y)
    layers = [
        {"weights": np.round(w, 6).tolist(), "bias": np.round(b, 6).tolist()}
        for w, b in zip(model.coefs_, model.intercepts_)
    ]
    head = ScopeHead(
        tuple(
            (np.asarray(w, np.float32), np.asarray(b, np.float32))
            for w, b in zip(model.coefs_, model.intercepts_)
        ),
        0.0,
        join,
    )
    # the threshold is set on held-out train cases: a fitted head scores its own training pairs too well
    hx, hy, hkinds = _features(embedder, held)
    held_score = head.score(hx)
    positives = np.sort(held_score[hkinds == "paraphrase"])
    threshold = float(positives[int((1 - args.recall) * len(positives))])
    score = head.score(x)

    def right(scores, kinds_) -> dict[str, float]:
        return {
            str(k): round(
                float(np.mean((scores[kinds_ == k] >= threshold) == (k in ("paraphrase", "relation")))), 4
            )
            for k in sorted(set(kinds_))
        }

    held_mend_pairs = np.arange(len(held)) >= len(held) - n_held_mend
    data = {
        "format": FORMAT,
        "features": "MiniLM all-MiniLM-L6-v2 vectors q (masked input), t (masked template): [q*t, |q-t|, q.t], "
        "then word_features(q, t): [content-stem Jaccard, any shared stem, share of q's stems not in t]",
        "layers": layers,
        "activation": "relu",
        "threshold": round(threshold, 6),
        "join_similarity": join,
        "fitted_on": {
            "files": [
                CF_TRAIN,
                MEND_TRAIN,
                *WIKI_TRAIN,
                "curated relations (memory.RelationVocabulary.builtin)",
            ],
            "counterfact_cases": args.cf,
            "zsre_mend_cases_held_out": args.held_mend,
            "pairs": len(y),
            "in_scope_pairs": int(y.sum()),
            "pairs_by_kind": {str(k): int(np.sum(kinds == k)) for k in sorted(set(kinds))},
            "hidden": args.hidden,
            "alpha": args.alpha,
            "relation_weight": args.relation_weight,
        },
        "train": {"auc": round(float(roc_auc_score(y, score)), 4), "right_by_kind": right(score, kinds)},
        "held_out": {
            "counterfact_cases": args.held_cf,
            "zsre_mend_cases": args.held_mend,
            "recall_target": args.recall,
            "auc": round(float(roc_auc_score(hy, held_score)), 4),
            "right_by_kind_counterfact": right(held_score[~held_mend_pairs], hkinds[~held_mend_pairs]),
            "right_by_kind_zsre_mend": right(held_score[held_mend_pairs], hkinds[held_mend_pairs]),
        },
    }
    args.out.write_text(json.dumps(data) + "\n", encoding="utf-8")
    print(
        f"{len(y)} pairs ({int(y.sum())} in scope); train {data['train']}; held out {data['held_out']}; "
        f"threshold {threshold:.3f}; {time.perf_counter() - t0:.0f} s -> {args.out}"
    )


if __name__ == "__main__":
    main()
