"""Questions asked through a stored value (issue #18): what `kl.query` does with a question that names a
stored fact's object, measured against an empty knowledge base asked the same question.

Two readings are measured (kedit/readings.py `scope_slots`): with no fact in scope, the facts whose object
the question names are read by the model ("Who is the son of Gabrielle Bordaberry?" once "The father of
Juan María Bordaberry is Gabrielle Bordaberry" is stored: origin "named object"); and an in-scope fact whose
object the question already names is read, not given as the answer (origin "walk").

- ZsRE dev (KnowEdit `ZsRE-test-dev.json`): the first `--n` cases' edits stored (store route, one
  knowledge base); their portability questions that name the new target, answered right (gold alias
  contained in the answer, case-folded) by the store and by an empty knowledge base.
- MQuAKE dev (`MQuAKE-CF-3k-dev.json`): the first `--n` cases' edits stored; every single-hop question of
  the new chains (a hop after an edit is asked about the edited object: "Who is the head of state of
  Croatia?") and every multi-hop question, counted by origin; the hop questions that take a new reading
  answered right by both. A reading that is wrong where the empty knowledge base was right is the harm.

    python -m benchmarks.studies.named_values --n 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.data.loaders import load_knowedit, load_mquake
from kedit import KnowledgeLayer
from kedit.paths import require_data_dir

NEW_READINGS = ("named object", "walk", "from country")


def _right(answer: str | None, gold: tuple[str, ...]) -> bool:
    text = (answer or "").casefold()
    return any(g.strip() and g.strip().casefold() in text for g in gold)


def _store(facts) -> KnowledgeLayer:
    kl = KnowledgeLayer.open(tempfile.mkdtemp(prefix="kedit-named-values-"))
    seen: dict[tuple[str, str], str] = {}
    items = []
    for f in facts:  # one object per (subject, relation; a subject when none is given): edit_many
        # refuses a contradictory batch, and ZsRE asks one subject's relation in several wordings
        key = (f.subject.casefold(), f.relation or "")
        if seen.setdefault(key, f.target) == f.target and f not in items:
            items.append(f)
    kl.edit_many(
        [dict(prompt=f.prompt, target=f.target, subject=f.subject, relation=f.relation) for f in items],
        route="store",
    )
    return kl


def _measure(kl: KnowledgeLayer, empty: KnowledgeLayer, asked: list[tuple[str, tuple[str, ...]]]) -> dict:
    readings = [kl.read_scope(q).origin for q, _ in asked]
    chosen = [(q, g) for (q, g), o in zip(asked, readings) if o in NEW_READINGS]
    out: dict = {"n": len(asked), "origins": dict(Counter(readings))}
    if chosen:
        stored = kl.query_many([q for q, _ in chosen])
        bare = empty.query_many([q for q, _ in chosen])
        right = [_right(a.answer, g) for a, (_, g) in zip(stored, chosen)]
        base = [_right(a.answer, g) for a, (_, g) in zip(bare, chosen)]
        out.update(
            new_reading=len(chosen),
            right_with_store=sum(right),
            right_empty_kb=sum(base),
            gained=sum(r and not b for r, b in zip(right, base)),
            lost=sum(b and not r for r, b in zip(right, base)),
            examples=[
                {"q": q, "gold": g[0], "store": a.answer, "empty": b.answer}
                for (q, g), a, b in list(zip(chosen, stored, bare))[:8]
            ],
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="cases of each file")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append the summary here (JSON lines)")
    args = parser.parse_args(argv)
    data = args.data or require_data_dir()
    empty = KnowledgeLayer.open(tempfile.mkdtemp(prefix="kedit-named-values-empty-"))
    out: dict = {"n": args.n}

    zsre = load_knowedit(data / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json", kind="zsre", limit=args.n).cases
    zsre = [c for i, c in enumerate(zsre) if all(c.subject != d.subject for d in zsre[:i])]
    kl = _store([c.fact for c in zsre])
    asked = [
        (qa.prompt, qa.answers)
        for c in zsre
        for qas in c.portability.values()
        for qa in qas
        if c.fact.target.strip().casefold() in qa.prompt.casefold()
    ]
    out["zsre_portability_naming_the_target"] = _measure(kl, empty, asked)

    mquake = load_mquake(data / "MQuAKE" / "MQuAKE-CF-3k-dev.json", limit=args.n).cases
    kl = _store([f for c in mquake for f in c.facts])
    hops = [(h.question, (h.answer, *h.aliases)) for c in mquake for h in c.new_single_hops if not h.edited]
    out["mquake_hops_after_an_edit"] = _measure(kl, empty, hops)
    multi = [(q, (c.new_answer, *c.new_answer_alias)) for c in mquake for q in c.questions]
    out["mquake_multi_hop"] = {
        "n": len(multi),
        "origins": dict(Counter(kl.read_scope(q).origin for q, _ in multi)),
    }
    print(json.dumps(out, indent=1, ensure_ascii=False))
    if args.out:
        with args.out.open("a") as fh:
            fh.write(json.dumps(out, ensure_ascii=False) + "\n")
    return out


if __name__ == "__main__":
    main()
