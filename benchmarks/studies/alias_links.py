"""Subjects written another way: which linking tier finds them, and what the fallbacks link wrongly (no
model; the scope model's tiers run on the linker and name indexes alone).

A store's subjects are the cases' subjects; a text is linked the way `ScopeModel` links it: a stored
name named whole (`EntityLinker.spans`, case, Latin accents and dashes folded), else in part
(`partial_spans`), else another form of a personal name (`kedit.scope.variants`), else a near-miss
spelling (`kedit.scope.fuzzy`). Counted:

- KnowEdit `portability.Subject_Aliasing` prompts (wiki_counterfact, wiki_recent, ZsRE): linked to their
  own subject, per tier; linked only to other subjects;
- wrong links: CounterFact neighbourhood prompts (another subject's; 1,000 counterfact-train subjects
  stored at a time, as the near-miss ratios were set) and MQuAKE questions with every case's edited
  subjects stored, where the text names no stored subject whole: any link a fallback tier makes is
  another entity's name read as a stored one.

    python -m benchmarks.studies.alias_links [--out benchmarks/results/scope/alias_links.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.data.loaders import load_mquake
from benchmarks.data.scope_data import counterfact_cases
from benchmarks.studies.summary_line import report
from graph import EntityLinker
from kedit.paths import require_data_dir
from kedit.scope.fuzzy import FuzzyNames
from kedit.scope.variants import NameVariants

TIERS = ("whole", "part", "variant", "near_miss")


class Tiers:
    """The scope model's linking tiers over a fixed set of stored subject names."""

    def __init__(self, names: set[str]) -> None:
        self.linker = EntityLinker()
        self.linker.add_names(sorted(names))
        self.variants, self.fuzzy = NameVariants(names), FuzzyNames(names)

    def link(self, text: str) -> tuple[str | None, set[str]]:
        """(the first tier that links something, the names it links)."""
        for tier, spans in zip(
            TIERS, (self.linker.spans, self.linker.partial_spans, self.variants.spans, self.fuzzy.spans)
        ):
            names = {n for _, _, found in spans(text) for n in found}
            if names:
                return tier, names
        return None, set()


def aliasing(path: Path) -> dict:
    records = json.loads(path.read_text(encoding="utf-8"))
    probes = [
        (r["subject"], p["prompt"])
        for r in records
        for p in (r.get("portability") or {}).get("Subject_Aliasing") or []
    ]
    tiers = Tiers({r["subject"] for r in records})
    row: dict = {"n": len(probes), "own": dict.fromkeys(TIERS, 0), "other_only": 0, "none": 0}
    for subject, prompt in probes:
        tier, names = tiers.link(prompt)
        if tier is None:
            row["none"] += 1
        elif subject in names:
            row["own"][tier] += 1
        else:
            row["other_only"] += 1
    row["own_total"] = sum(row["own"].values())
    return row


def wrong_links(texts_and_stores: list[tuple[str, set[str], Tiers]]) -> dict:
    """Texts that name none of `own` (their own subjects) whole: links the fallback tiers make."""
    row: dict = {"n": len(texts_and_stores), "by_tier": dict.fromkeys(TIERS[1:], 0), "examples": []}
    for text, own, tiers in texts_and_stores:
        tier, names = tiers.link(text)
        if tier in (None, "whole") or names & own:
            continue
        row["by_tier"][tier] += 1
        if len(row["examples"]) < 12:
            row["examples"].append([tier, text, sorted(names)])
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append the summary (JSON line) here")
    args = parser.parse_args(argv)
    data = args.data or require_data_dir()
    summary: dict = {"aliasing": {}, "wrong_links": {}}
    for name, relative in (
        ("wiki_counterfact", "KnowEdit/wiki_counterfact/train_cf-dev.json"),
        ("wiki_recent", "KnowEdit/wiki_recent/recent_train-dev.json"),
        ("zsre", "KnowEdit/ZsRE/ZsRE-test-dev.json"),
    ):
        summary["aliasing"][name] = aliasing(data / relative)
        print(name, json.dumps(summary["aliasing"][name]), flush=True)

    cases = counterfact_cases(data / "CounterFact" / "counterfact-train.json")
    neighbourhood = []
    for start in range(0, min(len(cases), 3000), 1000):
        block = cases[start : start + 1000]
        tiers = Tiers({c.subject for c in block})
        neighbourhood += [(p, {c.subject}, tiers) for c in block for p in c.other_subject]
    summary["wrong_links"]["counterfact_train_neighbourhood"] = wrong_links(neighbourhood)

    mquake = load_mquake(data / "MQuAKE").cases
    tiers = Tiers({rw.subject for case in mquake for rw in case.requested_rewrite})
    questions = [
        (q, {rw.subject for rw in case.requested_rewrite}, tiers) for case in mquake for q in case.questions
    ]
    summary["wrong_links"]["mquake_questions"] = wrong_links(questions)
    report(summary, args.out)
    return summary


if __name__ == "__main__":
    main()
