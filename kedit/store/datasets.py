"""Real facts from the shared benchmark data, as facts the store takes.

MQuAKE cases carry Wikidata relation ids (`orig.triples`) aligned with labelled triples; CounterFact's
flat format carries only the prompt, so its relation is read from the prompt's wording (cue table
below) and prompts with no clear cue are skipped.

>>> facts, aliases = mquake_facts("MQuAKE/MQuAKE-CF-3k-dev.json", limit=1)  # doctest: +SKIP
>>> [(f.subject, f.relation, f.object, f.source) for f in facts][-1]                           # doctest: +SKIP
('Croatia', 'P35', 'Kolinda Grabar-Kitarović', 'mquake-edit')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from memory import NewFact

# Ordered: the first cue found in a CounterFact prompt (with the subject removed) names its relation.
COUNTERFACT_CUES: list[tuple[str, str]] = [
    ("mother tongue", "P103"),
    ("native language", "P103"),
    ("native speaker", "P103"),
    ("official language", "P37"),
    ("law in {} declares the language", "P37"),
    ("in {}, they understand", "P37"),
    ("in {}, the language spoken", "P37"),
    ("in {}, an official language", "P37"),
    ("original language", "P364"),
    ("the language of {}", "P364"),
    ("speaks", "P1412"),
    ("spoke the language", "P1412"),
    ("speaker of", "P1412"),
    ("writes in", "P1412"),
    ("language used by", "P1412"),
    ("twin city", "P190"),
    ("position", "P413"),
    ("plays as", "P413"),
    ("developed by", "P178"),
    ("created by", "P170"),
    ("produced by", "P176"),
    ("product of", "P176"),
    ("citizen", "P27"),
    ("continent", "P30"),
    ("country of", "P17"),
    ("premiere", "P449"),
    ("debuted on", "P449"),
    ("aired on", "P449"),
    ("released on", "P449"),
    ("debut on", "P449"),
    ("headquarter", "P159"),
    ("based in", "P159"),
    ("employed by", "P108"),
    ("works for", "P108"),
    ("worked in", "P937"),
    ("work in", "P937"),
    ("took up work", "P937"),
    ("employment in", "P937"),
    ("employed in", "P937"),
    ("religion", "P140"),
    ("follower of", "P140"),
    ("died", "P20"),
    ("passed away", "P20"),
    ("life ended", "P20"),
    ("expired at", "P20"),
    ("succumbed", "P20"),
    ("lost their life", "P20"),
    ("born in", "P19"),
    ("occupation", "P106"),
    ("profession", "P106"),
    ("works as", "P106"),
    ("field of", "P101"),
    ("domain of", "P101"),
    ("expertise", "P101"),
    ("area of work", "P101"),
    ("owner", "P127"),
    ("owned by", "P127"),
    ("genre", "P136"),
    ("instrument", "P1303"),
    ("performs on the", "P1303"),
    ("performing on the", "P1303"),
    ("sport", "P641"),
    ("professionally plays", "P641"),
    ("founded in", "P740"),
    ("formed in", "P740"),
    ("started in", "P740"),
    ("formulated in", "P740"),
    ("created in", "P495"),
    ("originat", "P495"),
    ("located in", "P276"),
    ("can be found in", "P276"),
    ("location of", "P276"),
    ("is within", "P276"),
    ("title of", "P39"),
    ("has the position", "P39"),
    ("represented by", "P264"),
    ("label", "P264"),
    ("member of", "P463"),
    ("named after", "P138"),
    ("capital", "P36"),
]


@dataclass(frozen=True)
class CounterFactCase:
    case_id: int
    fact: NewFact
    rephrase: str


def counterfact_relation(prompt: str, subject: str) -> str | None:
    template = prompt.replace(subject, "{}", 1).casefold()
    for cue, relation in COUNTERFACT_CUES:
        if cue in template:
            return relation
    return None


def counterfact_cases(
    path: str | Path, limit: int | None = None, new_target: bool = True
) -> list[CounterFactCase]:
    """CounterFact records whose relation is recognisable: the fact (prompt + target) and its paraphrase."""
    cases = []
    for row in json.loads(Path(path).read_text(encoding="utf-8")):
        relation = counterfact_relation(row["prompt"], row["subject"])
        if relation is None:
            continue
        target = row["target_new"] if new_target else row["ground_truth"]
        fact = NewFact(
            row["subject"],
            relation,
            target,
            sentence=f"{row['prompt']} {target}.",
            source="counterfact",
            provenance={"case_id": row["case_id"]},
        )
        cases.append(CounterFactCase(int(row["case_id"]), fact, row["rephrase_prompt"]))
        if limit is not None and len(cases) >= limit:
            break
    return cases


def mquake_cases(path: str | Path, limit: int | None = None) -> list[dict]:
    cases = json.loads(Path(path).read_text(encoding="utf-8"))
    return cases if limit is None else cases[:limit]


def mquake_facts(path: str | Path, limit: int | None = None) -> tuple[list[NewFact], dict[str, set[str]]]:
    """Facts of MQuAKE cases: the world's facts on both chains (source `mquake`) and the edits
    (`mquake-edit`, listed after, so they supersede), plus entity aliases from the answers."""
    original: dict[tuple[str, str, str], NewFact] = {}
    edits: dict[tuple[str, str, str], NewFact] = {}
    aliases: dict[str, set[str]] = {}
    for case in mquake_cases(path, limit):
        orig = case["orig"]
        edit_ids = {tuple(t) for t in orig["edit_triples"]}
        for ids, labelled in zip(orig["triples"], orig["triples_labeled"]):
            key = (labelled[0], ids[1], labelled[2])
            original.setdefault(
                key,
                NewFact(
                    labelled[0], ids[1], labelled[2], source="mquake", provenance={"case_id": case["case_id"]}
                ),
            )
        for ids, labelled in zip(orig["new_triples"], orig["new_triples_labeled"]):
            key = (labelled[0], ids[1], labelled[2])
            if tuple(ids) in edit_ids:
                edits.setdefault(
                    key,
                    NewFact(
                        labelled[0],
                        ids[1],
                        labelled[2],
                        source="mquake-edit",
                        provenance={"case_id": case["case_id"]},
                    ),
                )
            else:  # a real-world hop after the edited one (e.g. the new country's head of state)
                original.setdefault(
                    key,
                    NewFact(
                        labelled[0],
                        ids[1],
                        labelled[2],
                        source="mquake",
                        provenance={"case_id": case["case_id"]},
                    ),
                )
        for hop in case["single_hops"] + case["new_single_hops"]:
            aliases.setdefault(hop["answer"], set()).update(a for a in hop["answer_alias"] if a.strip())
    return list(original.values()) + [f for k, f in edits.items() if k not in original], aliases
