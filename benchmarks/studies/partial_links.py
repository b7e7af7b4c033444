"""Linking a name named in part (`EntityLinker.partial_spans`), checked on the linker alone (no model).

With the subjects of a benchmark's cases as the stored names (and, for ZsRE and CounterFact, their new
targets, as a store's objects are names too), a text that names no stored subject whole is linked in
part; counted:

- ZsRE paraphrases (`rephrase_prompt`) that name their subject otherwise: linked to their own subject,
  or to another;
- CounterFact neighbourhood prompts (other subjects, same relation) and MQuAKE questions that name no
  stored subject whole: linked in part to any stored subject (each such link is a false one).

    python -m benchmarks.studies.partial_links --n 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.data.loaders import load_mquake
from benchmarks.data.scope_data import counterfact_cases, distinct_subjects, zsre_cases
from graph import EntityLinker
from kedit.paths import require_data_dir


def _linker(names) -> EntityLinker:
    linker = EntityLinker()
    linker.add_names(names)
    return linker


def _part_linked(linker: EntityLinker, text: str, subjects: set[str]) -> list[str] | None:
    """Stored subjects `text` names in part; None when it names one whole."""
    if any(n in subjects for _, _, names in linker.spans(text) for n in names):
        return None
    return [n for _, _, names in linker.partial_spans(text) for n in names if n in subjects]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--n", type=int, default=300, help="cases (distinct subjects) per ZsRE / CounterFact set"
    )
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args(argv)
    data = args.data or require_data_dir()
    out: dict = {}

    zsre = distinct_subjects(zsre_cases(data / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json"))[: args.n]
    subjects = {c.subject for c in zsre}
    linker = _linker(n for c in zsre for n in (c.subject, c.target))
    found = [(c.subject, _part_linked(linker, p, subjects)) for c in zsre for p in c.in_scope[1:]]
    spelt_otherwise = [(s, names) for s, names in found if names is not None]
    out["zsre_paraphrases"] = {
        "n": len(found),
        "name_no_subject_whole": len(spelt_otherwise),
        "linked_own": sum(s in names for s, names in spelt_otherwise),
        "linked_other": sum(bool(names) and s not in names for s, names in spelt_otherwise),
    }

    cf = distinct_subjects(counterfact_cases(data / "CounterFact" / "counterfact-val.json"))[: args.n]
    subjects = {c.subject for c in cf}
    linker = _linker(n for c in cf for n in (c.subject, c.target))
    neighbours = [_part_linked(linker, p, subjects) for c in cf for p in c.other_subject]
    out["counterfact_neighbourhood"] = {
        "n": len(neighbours),
        "name_no_subject_whole": sum(f is not None for f in neighbours),
        "linked_in_part": sum(bool(f) for f in neighbours),
    }

    cases = load_mquake(data / "MQuAKE").cases
    subjects = {rw.subject for case in cases for rw in case.requested_rewrite}
    linker = _linker(
        n for case in cases for rw in case.requested_rewrite for n in (rw.subject, rw.target_new)
    )
    questions = [_part_linked(linker, q, subjects) for case in cases for q in case.questions]
    out["mquake_questions"] = {
        "n": len(questions),
        "name_no_subject_whole": sum(f is not None for f in questions),
        "linked_in_part": sum(bool(f) for f in questions),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
