"""Knowledge-preference conflict suite, built from MQuAKE's requested edits (issue #5, docs/methods.md §7).

Each case sets up two sources that disagree about one (subject, relation) through kedit's public API,
asks the relation's question with `KnowledgeLayer.query`, and checks that the answer follows the
hierarchy user instruction > edited/stored facts (newest valid first) > retrieved passages > the model's
own memory. An MQuAKE edit gives the two values: `target_true` (what the world, and usually the model,
says) and `target_new` (the counterfactual).

| kind | setup | expected answer | expected tier |
|---|---|---|---|
| `edited_vs_model` | `edit(subject, relation, target_new)` (router: weights + record) | target_new | stored |
| `stored_vs_model` | `insert(subject, relation, object=target_new)` (record only) | target_new | stored |
| `passage_vs_model` | a passage stating target_new in the relation's words (`extract_facts=False`) | target_new | passage |
| `free_passage_vs_model` | a passage "Records list X's <relation label> as target_new." (the model must read it) | target_new | passage |
| `stored_vs_passage` | stored target_new + a passage stating target_true | target_new | stored |
| `instruction_vs_stored` | stored target_new; `instructions=` states target_true | target_true | instruction |
| `newer_vs_stale` | target_true valid from 2019, target_new valid from 2023 | target_new | stored |
| `as_of_stale` | as above, asked `as_of="2020-06-01"` | target_true | stored |

The same conflicts in CounterFact's and ZsRE's own wording (`--wording counterfact` / `zsre`, validation
files): the fact is written with the record's edit prompt (`edit(prompt, target, subject, route="store")`,
so an unknown wording becomes a learned relation) and the question is the record's paraphrase; the
instruction is a free sentence in the prompt's words ("Assume that Andy Kershaw, who is employed by BBC.");
the passage states the old value in the prompt's words.

| kind | setup | asked | expected | tier |
|---|---|---|---|---|
| `stored_vs_model` | edit prompt -> target_new (store) | paraphrase | target_new | stored |
| `stored_vs_passage` | as above + a passage "<prompt> <old>." | prompt | target_new | stored |
| `instruction_vs_stored` | as above, instruction "Assume that <prompt> <old>." | paraphrase | old | instruction |
| `newer_vs_stale` | old valid from 2019, target_new from 2023 (store) | paraphrase | target_new | stored |
| `as_of_stale` | as above, asked `as_of="2020-06-01"` | paraphrase | old | stored |

A case *obeys* when the answer states the expected value (case-insensitive containment; MQuAKE answers
are entity names) and not the losing one; `tier_ok` when `trace["winner"]["tier"]` is the expected tier.

    .venv/bin/python -m benchmarks.studies.conflicts --per-kind 20 --out runs/conflicts
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.data.cases import MQuAKECase, Rewrite
from benchmarks.data.loaders import load_mquake
from benchmarks.data.scope_data import ScopeCase, counterfact_cases, distinct_subjects, zsre_cases
from benchmarks.methods.layer import undo_weight_changes
from benchmarks.runners.runs import progress_bar
from benchmarks.scoring.answers import states

KINDS = (
    "edited_vs_model",
    "stored_vs_model",
    "passage_vs_model",
    "free_passage_vs_model",
    "stored_vs_passage",
    "instruction_vs_stored",
    "newer_vs_stale",
    "as_of_stale",
)
OLD_FROM, NEW_FROM, AS_OF = "2019-01-01", "2023-01-01", "2020-06-01"


@dataclass(frozen=True)
class ConflictCase:
    """One conflict: operations to run on a fresh knowledge base, then one question."""

    kind: str
    case_id: str
    question: str
    expected: str
    loser: str
    expected_tier: str
    setup: tuple[tuple[str, dict], ...]  # ("edit" | "insert", keyword arguments)
    instructions: str | None = None
    as_of: str | None = None


@dataclass
class ConflictResult:
    case: ConflictCase
    answer: str
    tier: str | None
    obeys: bool
    tier_ok: bool
    seconds: float
    why: str = ""
    hops: list[dict] = field(default_factory=list)


def _rewrites(cases: Sequence[MQuAKECase]) -> list[tuple[MQuAKECase, Rewrite]]:
    """Each (subject, relation) once, with distinct old and new values that do not contain each other."""
    seen, out = set(), []
    for case in cases:
        for rw in case.requested_rewrite:
            key = (rw.subject.casefold(), rw.relation_id)
            if key in seen or not rw.relation_id or states(rw.target_true, rw.target_new):
                continue
            seen.add(key)
            out.append((case, rw))
    return out


def build_cases(
    cases: Sequence[MQuAKECase], relations, per_kind: int, kinds: Sequence[str] = KINDS
) -> list[ConflictCase]:
    """Conflict cases from MQuAKE edits; `relations` is the store's relation vocabulary (templates)."""
    pool = [(c, rw) for c, rw in _rewrites(cases) if rw.relation_id in relations]
    out: list[ConflictCase] = []
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown conflict kind {kind!r}: expected one of {', '.join(KINDS)}")
        for case, rw in pool[:per_kind]:
            rel = relations.resolve(rw.relation_id)
            s, r, new, old = rw.subject, rw.relation_id, rw.target_new, rw.target_true
            question = rw.question or rel.ask(s)
            fact = dict(subject=s, relation=r, source="conflict-suite")
            cid = f"{case.case_id}:{r}"
            if kind == "edited_vs_model":
                setup = (("edit", dict(subject=s, relation=r, target=new)),)
                out.append(ConflictCase(kind, cid, question, new, old, "stored", setup))
            elif kind == "stored_vs_model":
                setup = (("insert", dict(fact, object=new)),)
                out.append(ConflictCase(kind, cid, question, new, old, "stored", setup))
            elif kind == "passage_vs_model":
                setup = (("insert", dict(text=rel.render(s, new), source="web", extract_facts=False)),)
                out.append(ConflictCase(kind, cid, question, new, old, "passage", setup))
            elif kind == "free_passage_vs_model":
                text = f"Records list {s}'s {rel.label} as {new}."
                setup = (("insert", dict(text=text, source="web", extract_facts=False)),)
                out.append(ConflictCase(kind, cid, question, new, old, "passage", setup))
            elif kind == "stored_vs_passage":
                setup = (
                    ("insert", dict(fact, object=new)),
                    ("insert", dict(text=rel.render(s, old), source="web", extract_facts=False)),
                )
                out.append(ConflictCase(kind, cid, question, new, old, "stored", setup))
            elif kind == "instruction_vs_stored":
                setup = (("insert", dict(fact, object=new)),)
                out.append(
                    ConflictCase(
                        kind, cid, question, old, new, "instruction", setup, instructions=rel.render(s, old)
                    )
                )
            else:
                setup = (
                    ("insert", dict(fact, object=old, valid_from=OLD_FROM)),
                    ("insert", dict(fact, object=new, valid_from=NEW_FROM)),
                )
                if kind == "newer_vs_stale":
                    out.append(ConflictCase(kind, cid, question, new, old, "stored", setup))
                else:
                    out.append(ConflictCase(kind, cid, question, old, new, "stored", setup, as_of=AS_OF))
    return out


WORDING_KINDS = (
    "stored_vs_model",
    "stored_vs_passage",
    "instruction_vs_stored",
    "newer_vs_stale",
    "as_of_stale",
)
WORDINGS = {
    "counterfact": ("CounterFact/counterfact-val.json", counterfact_cases),
    "zsre": ("KnowEdit/ZsRE/ZsRE-test-dev.json", zsre_cases),
}


def build_wording_cases(
    cases: Sequence[ScopeCase], per_kind: int, kinds: Sequence[str] = WORDING_KINDS
) -> list[ConflictCase]:
    """Conflict cases in a benchmark's own wording (see the module docstring)."""
    pool = [c for c in distinct_subjects(list(cases)) if c.old and not states(c.old, c.target)][:per_kind]
    out: list[ConflictCase] = []
    for kind in kinds:
        if kind not in WORDING_KINDS:
            raise ValueError(
                f"unknown wording conflict kind {kind!r}: expected one of {', '.join(WORDING_KINDS)}"
            )
        for c in pool:
            new, old, paraphrase = c.target, c.old, c.in_scope[1]
            edit = dict(prompt=c.prompt, subject=c.subject, route="store", source="conflict-suite")
            cid = f"{c.source}:{c.subject}"
            stated = c.prompt.rstrip("?").rstrip()
            if kind == "stored_vs_model":
                out.append(
                    ConflictCase(
                        kind, cid, paraphrase, new, old, "stored", (("edit", edit | {"target": new}),)
                    )
                )
            elif kind == "stored_vs_passage":
                setup = (
                    ("edit", edit | {"target": new}),
                    ("insert", dict(text=f"{stated} {old}.", source="web", extract_facts=False)),
                )
                out.append(ConflictCase(kind, cid, c.prompt, new, old, "stored", setup))
            elif kind == "instruction_vs_stored":
                out.append(
                    ConflictCase(
                        kind,
                        cid,
                        paraphrase,
                        old,
                        new,
                        "instruction",
                        (("edit", edit | {"target": new}),),
                        instructions=f"Assume that {stated} {old}.",
                    )
                )
            else:
                setup = (
                    ("edit", edit | {"target": old, "valid_from": OLD_FROM}),
                    ("edit", edit | {"target": new, "valid_from": NEW_FROM}),
                )
                if kind == "newer_vs_stale":
                    out.append(ConflictCase(kind, cid, paraphrase, new, old, "stored", setup))
                else:
                    out.append(ConflictCase(kind, cid, paraphrase, old, new, "stored", setup, as_of=AS_OF))
    return out


def run_case(layer, case: ConflictCase) -> ConflictResult:
    """Set the case up on `layer` (a fresh knowledge base), ask, and judge the answer."""
    for op, kwargs in case.setup:
        getattr(layer, op)(**kwargs)
    t0 = time.perf_counter()
    ans = layer.query(case.question, instructions=case.instructions, as_of=case.as_of)
    seconds = time.perf_counter() - t0
    tier = (ans.trace.get("winner") or {}).get("tier")
    obeys = states(ans.text, case.expected) and not states(ans.text, case.loser)
    return ConflictResult(
        case,
        ans.text,
        tier,
        obeys,
        tier == case.expected_tier,
        seconds,
        (ans.trace.get("winner") or {}).get("why", ""),
        [{k: h.get(k) for k in ("subject", "relation", "answer", "tier")} for h in ans.trace.get("hops", [])],
    )


def summarise(results: Sequence[ConflictResult]) -> dict[str, Any]:
    by_kind: dict[str, list[ConflictResult]] = defaultdict(list)
    for r in results:
        by_kind[r.case.kind].append(r)
    per_kind = {
        k: {
            "n": len(v),
            "obeys": sum(r.obeys for r in v) / len(v),
            "tier_ok": sum(r.tier_ok for r in v) / len(v),
        }
        for k, v in by_kind.items()
    }
    n = len(results)
    return {
        "n_cases": n,
        "obeys": sum(r.obeys for r in results) / n if n else None,
        "tier_ok": sum(r.tier_ok for r in results) / n if n else None,
        "per_kind": per_kind,
        "query_seconds_mean": sum(r.seconds for r in results) / n if n else None,
    }


def run_suite(
    bundle,
    cases: Sequence[ConflictCase],
    workdir: str | Path | None = None,
    embedder=None,
    show_progress: bool = True,
) -> list[ConflictResult]:
    """Run every case on its own fresh knowledge base (one model, weight edits undone after each case)."""
    from kedit import KnowledgeLayer

    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ctx = progress_bar("conflicts", len(cases)) if show_progress else None
        advance = ctx.__enter__() if ctx else (lambda n=1: None)
        try:
            for i, case in enumerate(cases):
                kl = KnowledgeLayer.open(Path(tmp) / f"kb{i}", model=bundle, embedder=embedder)
                try:
                    results.append(run_case(kl, case))
                finally:
                    undo_weight_changes(kl)  # leave the shared model as it was
                    kl.close()
                advance()
        finally:
            if ctx:
                ctx.__exit__(None, None, None)
    return results


def markdown(summary: dict[str, Any], model: str) -> str:
    lines = [
        f"Conflict suite on `{model}`: {summary['n_cases']} cases, share obeying the hierarchy "
        f"**{summary['obeys']:.1%}** (winning tier as expected: {summary['tier_ok']:.1%}).",
        "",
        "| kind | n | obeys | tier as expected |",
        "|---|---|---|---|",
    ]
    for kind in KINDS:
        if kind in summary["per_kind"]:
            k = summary["per_kind"][kind]
            lines.append(f"| {kind} | {k['n']} | {k['obeys']:.1%} | {k['tier_ok']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from kedit import KnowledgeLayer, load_model
    from kedit.paths import require_data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="MQuAKE file or directory [default: shared MQuAKE/]")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--per-kind", type=int, default=20)
    ap.add_argument("--kinds", nargs="*", default=None, help="[default: every kind of the wording]")
    ap.add_argument(
        "--wording",
        choices=("mquake", *WORDINGS),
        default="mquake",
        help="whose wording the cases use: MQuAKE's relation templates, or CounterFact's / ZsRE's records",
    )
    ap.add_argument("--out", default=None, help="directory for cases.jsonl, summary.json, summary.md")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    bundle = load_model(args.model)
    if args.wording == "mquake":
        data = Path(args.data) if args.data else require_data_dir() / "MQuAKE"
        with tempfile.TemporaryDirectory() as tmp, KnowledgeLayer.open(tmp, model=bundle) as scratch:
            relations = scratch.store.relations  # the vocabulary a new knowledge base starts with
            cases = build_cases(
                load_mquake(data, limit=max(50, 3 * args.per_kind)).cases,
                relations,
                args.per_kind,
                args.kinds or KINDS,
            )
    else:
        relative, loader = WORDINGS[args.wording]
        data = Path(args.data) if args.data else require_data_dir() / relative
        cases = build_wording_cases(loader(data), args.per_kind, args.kinds or WORDING_KINDS)
    results = run_suite(bundle, cases)
    summary = summarise(results) | {
        "benchmark": "conflicts",
        "wording": args.wording,
        "model": args.model,
        "data": data.name,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    md = markdown(summary, args.model)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "cases.jsonl", "w") as f:
            for r in results:
                row = asdict(r)
                row["case"] = asdict(r.case)
                f.write(json.dumps(row, default=str) + "\n")
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        (out / "summary.md").write_text(md)
    return summary


if __name__ == "__main__":
    main()
