"""Relation detection in questions and prompts: lexical templates alone vs lexical + MiniLM similarity.

    .venv/bin/python -m benchmarks.studies.relation_bench

Labelled sets (relation ids from the data, never from the matcher):
- MQuAKE single-hop questions ("Which city was Ellie Kemper born in?") with the Wikidata relation of
  their hop (`orig.triples` / `orig.new_triples`), MQuAKE-CF-3k-dev;
- CounterFact edit prompts as templates ("{}, who has a citizenship from") and their rephrasings
  (concrete, often after an unrelated lead-in sentence), labelled with the prompt's relation
  (`kedit.store.datasets.counterfact_relation`).

The embedding threshold is chosen on the CounterFact-train templates (what `KnowledgeLayer` passes:
edit prompts), maximising right minus wrong answers (a wrong relation files a fact under the wrong
relation, worse than none), and reported on CounterFact-val and MQuAKE, which the choice never saw.
CounterFact labels come from a cue table over the prompt and are ambiguous for some wordings
("located in": P131/P17/P276), so its wrong rates are upper bounds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kedit.paths import require_data_dir
from kedit.runtime.embeddings import default_embedder
from kedit.statements import EMBEDDING_THRESHOLD, _lexical, match_relations, nearest_relations  # noqa: PLC2701
from kedit.store.datasets import counterfact_relation
from memory import RelationVocabulary


def mquake_questions(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for case in json.loads(path.read_text(encoding="utf-8")):
        orig = case["orig"]
        for hops, triples in (
            (case["single_hops"], orig["triples"]),
            (case["new_single_hops"], orig["new_triples"]),
        ):
            pairs += [(hop["question"], triple[1]) for hop, triple in zip(hops, triples)]
    return sorted(set(pairs))


def counterfact_sets(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    templates, rephrased = set(), set()
    for row in json.loads(path.read_text(encoding="utf-8")):
        relation = counterfact_relation(row["prompt"], row["subject"])
        if relation is None or row["subject"] not in row["prompt"]:
            continue
        templates.add((row["prompt"].replace(row["subject"], "{}", 1), relation))
        rephrased.add((row["rephrase_prompt"], relation))
    return sorted(templates), sorted(rephrased)


def score(pairs, lexical, nearest, threshold: float | None, generic=None) -> tuple[float, float]:
    """(accuracy, wrong rate): lexical answers, then the nearest relation where lexical has none, then
    the generic templates (as `match_relations` does)."""
    right = wrong = 0
    generic = generic or [None] * len(pairs)
    for (_, gold), lex, (near, sim), last in zip(pairs, lexical, nearest, generic):
        guess = lex if lex is not None or threshold is None else (near if sim >= threshold else None)
        guess = last if guess is None else guess
        right += guess == gold
        wrong += guess is not None and guess != gold
    return right / len(pairs), wrong / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    data = args.data or require_data_dir()
    relations = RelationVocabulary.builtin()
    embedder = default_embedder()
    train_t, train_r = counterfact_sets(data / "CounterFact" / "counterfact-train.json")
    val_t, val_r = counterfact_sets(data / "CounterFact" / "counterfact-val.json")
    sets = {
        "CounterFact-train templates": train_t,
        "CounterFact-train rephrasings": train_r,
        "CounterFact-val templates": val_t,
        "CounterFact-val rephrasings": val_r,
        "MQuAKE single-hop questions": mquake_questions(data / "MQuAKE" / "MQuAKE-CF-3k-dev.json"),
    }
    known = {r.id for r in relations}
    sets = {name: [p for p in pairs if p[1] in known] for name, pairs in sets.items()}
    lexical = {name: match_relations([t for t, _ in pairs], relations) for name, pairs in sets.items()}
    nearest = {
        name: nearest_relations([t for t, _ in pairs], relations, embedder) for name, pairs in sets.items()
    }
    generic = {
        name: [_lexical(t, list(relations), generic=True) for t, _ in pairs] for name, pairs in sets.items()
    }

    tune = ["CounterFact-train templates"]  # what the callers pass: edit prompts with {} for the subject
    grid = np.round(np.arange(0.30, 0.96, 0.05), 2)

    def net(threshold: float) -> float:
        total = 0.0
        for name in tune:
            acc, wrong = score(sets[name], lexical[name], nearest[name], threshold, generic[name])
            total += (acc - wrong) * len(sets[name])
        return total

    chosen = float(max(grid, key=net))
    print(
        "right - wrong on CounterFact-train templates by threshold: "
        + ", ".join(f"{t:.2f}: {net(t):.0f}" for t in grid)
    )
    print(
        f"threshold chosen on CounterFact-train templates (right - wrong): {chosen:.2f} "
        f"(kedit.statements.EMBEDDING_THRESHOLD = {EMBEDDING_THRESHOLD})"
    )
    print("accuracy / wrong-answer rate (the rest: no relation found)")
    print(
        f"{'set':30s} {'n':>5s}  {'lexical':>13s}  {'lex+emb ' + format(chosen, '.2f'):>13s}  "
        f"{'lex+emb ' + str(EMBEDDING_THRESHOLD):>13s}  {'emb only':>13s}"
    )
    for name, pairs in sets.items():
        cells = [
            score(pairs, lexical[name], nearest[name], None, generic[name]),
            score(pairs, lexical[name], nearest[name], chosen, generic[name]),
            score(pairs, lexical[name], nearest[name], EMBEDDING_THRESHOLD, generic[name]),
            score(pairs, [None] * len(pairs), nearest[name], 0.0),
        ]
        print(f"{name:30s} {len(pairs):5d}  " + "  ".join(f"{a:.3f} / {w:.3f}" for a, w in cells))


if __name__ == "__main__":
    main()
