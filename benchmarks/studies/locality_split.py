"""KnowEdit locality split by what a probe asks, read from committed runs (no model).

KnowEdit's `locality.Relation_Specificity` lists the edited subject's Wikidata relations, and on ZsRE 15 %
of them are the edited relation itself in label wording ("Tau Herculis constellation" for "In which
constellation is Tau Herculis?"): their answer is the edit's old value (the record's `ground_truth`).
An edit that generalises answers them with the new value and loses locality there; a method that does
not generalise to label wording keeps them. This splits each run's locality into those probes (the
probe's answer is one of the record's old answers) and the rest (another relation of the subject), each
pooled over its probes with a 95 % bootstrap interval over cases (as the summaries').

With `--portability`, each run's portability is split instead into the probes that name the edited
subject (as written in the record, case folded) and those that do not ("The gender of the author of
<a paper> is", a two-hop probe through an entity no store links to the subject): a method that puts the
case's fact before every probe (`rag`) answers the second kind by the same rule that costs it locality.

    python -m benchmarks.studies.locality_split [--runs benchmarks/results/runs] [--kind zsre] [--portability]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.scoring.intervals import bootstrap_intervals


def _answers(value) -> set[str]:
    values = value if isinstance(value, list) else [value]
    return {" ".join(str(v or "").casefold().split()) for v in values} - {""}


PARTS = ("edited_relation", "other_relations")
PORTABILITY_PARTS = ("names_subject", "subject_alias", "other_entity")


def _per_case(cases_file: Path, section: str, parts: tuple[str, ...], part_of) -> list[dict]:
    """For each case of a run: {part: (score sum, probes)} over its `section` probes, each probe's part
    given by `part_of(case inputs, kind, prompt, truth)`."""
    rows = []
    for line in cases_file.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        row = {part: [0.0, 0] for part in parts}
        for kind, probes in case["inputs"].get(section, {}).items():
            scores = (case.get("metrics") or {}).get(section, {}).get(kind, [])
            for (prompt, truth), score in zip(probes, scores):
                part = part_of(case["inputs"], kind, prompt, truth)
                if part is not None:
                    row[part][0] += score
                    row[part][1] += 1
        rows.append({part: (total, n) for part, (total, n) in row.items()})
    return rows


def per_case(cases_file: Path) -> list[dict[str, tuple[float, int]]]:
    """For each case of a run: {"edited_relation" | "other_relations": (score sum, probes)} over its
    `Relation_Specificity` probes (the edited relation: the probe's answer is one of the old answers)."""

    def part_of(inputs, kind, prompt, truth):
        if kind != "Relation_Specificity":
            return None
        old = _answers(inputs.get("ground_truth") or [])
        return "edited_relation" if old & _answers(truth) else "other_relations"

    return _per_case(cases_file, "locality", PARTS, part_of)


def per_case_portability(cases_file: Path) -> list[dict[str, tuple[float, int]]]:
    """For each case of a run: {"names_subject" | "subject_alias" | "other_entity": (score sum, probes)}
    over every portability probe (`Subject_Aliasing` probes name the subject in another form)."""

    def part_of(inputs, kind, prompt, truth):
        if kind == "Subject_Aliasing":
            return "subject_alias"
        return "names_subject" if inputs["subject"].casefold() in prompt.casefold() else "other_entity"

    return _per_case(cases_file, "portability", PORTABILITY_PARTS, part_of)


def pooled(rows: list[dict[str, tuple[float, int]]]) -> dict[str, float]:
    """Each part's locality pooled over its probes (a part no case has is left out)."""
    out = {}
    for part in rows[0] if rows else ():
        n = sum(r[part][1] for r in rows)
        if n:
            out[part] = 100 * sum(r[part][0] for r in rows) / n
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/results/runs"))
    parser.add_argument("--kind", default="zsre", help="zsre | counterfact | recent")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--portability", action="store_true", help="split portability, not locality")
    args = parser.parse_args(argv)
    out: dict = {}
    for run in sorted(args.runs.glob(f"knowedit-{args.kind}-*-{args.model}")):
        cases = run / "cases.jsonl"
        if not cases.exists():
            continue
        method = run.name.removeprefix(f"knowedit-{args.kind}-").removesuffix(f"-{args.model}")
        rows = per_case_portability(cases) if args.portability else per_case(cases)
        values, intervals = pooled(rows), bootstrap_intervals(rows, pooled)
        out[method] = {
            part: {
                "score": round(values[part], 1),
                "interval": [round(v, 1) for v in intervals.get(part, (values[part],) * 2)],
                "probes": sum(r[part][1] for r in rows),
            }
            for part in values
        }
        print(method, json.dumps(out[method]), flush=True)
    return out


if __name__ == "__main__":
    main()
