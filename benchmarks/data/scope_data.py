"""Scope cases from CounterFact, ZsRE (KnowEdit) and zsRE-MEND records: one stored fact, the wordings that
are in its scope, and same-subject wordings that are not.

- CounterFact (EasyEdit flat format): in scope `prompt` and `rephrase_prompt`; other subject
  `locality_prompt` (the neighbourhood: same relation, another subject). CounterFact has no relation
  ids in this format, so its relations are recovered as clusters: each record's prompt template is joined
  with the template its neighbourhood prompt instantiates (CounterFact draws both from one relation's
  templates). Same-subject negatives are another cluster's paraphrase with this record's subject in it.
- ZsRE (KnowEdit): in scope `prompt`, `rephrase_prompt`; same subject, other relation:
  `locality.Relation_Specificity` prompts (real, not synthetic). 15 % of zsre-dev's (190 of 1,302) ask the
  edited relation itself, in label wording ("Tau Herculis constellation" for "In which constellation is
  Tau Herculis?"): their answer is the edit's old answer. Those are in the fact's scope (a store that
  answers them with the new target is right), so they are kept apart (`same_relation_labels`). KnowEdit's
  WikiData train files have 2 such prompts in 1,401.
- zsRE-MEND: in scope `src`, `rephrase`; no same-subject negatives of its own.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ScopeCase:
    source: str
    subject: str
    prompt: str  # the edit prompt (holds the subject)
    target: str
    in_scope: tuple[str, ...]  # wordings that ask for the stored fact
    same_subject_out: tuple[str, ...] = ()  # same subject, another relation
    other_subject: tuple[str, ...] = ()  # another subject (locality)
    cluster: str = field(default="", compare=False)
    old: str = ""  # the true value the edit replaces (CounterFact / ZsRE ground truth)
    same_relation_labels: tuple[str, ...] = ()  # same subject, the edited relation in label wording (ZsRE)


def _template(prompt: str, subject: str) -> str | None:
    return prompt.replace(subject, "{}", 1) if subject in prompt else None


def counterfact_clusters(records: list[dict]) -> list[str | None]:
    """A relation label per CounterFact record (see the module docstring)."""
    templates = sorted({t for r in records if (t := _template(r["prompt"], r["subject"]))})
    parent = {t: t for t in templates}

    def find(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    patterns = []
    for t in templates:
        head, tail = t.split("{}", 1)
        patterns.append(
            (len(head) + len(tail), t, re.compile("^" + re.escape(head) + r"(.+?)" + re.escape(tail) + "$"))
        )
    patterns.sort(reverse=True)  # the most specific template that the neighbourhood prompt fits
    for r in records:
        t = _template(r["prompt"], r["subject"])
        if t is None:
            continue
        for _, other, pattern in patterns:
            if pattern.match(r.get("locality_prompt", "")):
                parent[find(other)] = find(t)
                break
    return [find(t) if (t := _template(r["prompt"], r["subject"])) else None for r in records]


def counterfact_cases(path: Path, limit: int | None = None, seed: int = 0) -> list[ScopeCase]:
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    clusters = counterfact_clusters(records)
    rng = random.Random(seed)
    cases = []
    for i, r in enumerate(records):
        if clusters[i] is None or r["subject"] not in r["rephrase_prompt"]:
            continue
        negatives = []
        for _ in range(20):  # a paraphrase of another relation, with this subject in it
            j = rng.randrange(len(records))
            o = records[j]
            if clusters[j] not in (None, clusters[i]) and o["subject"] in o["rephrase_prompt"]:
                negatives.append(o["rephrase_prompt"].replace(o["subject"], r["subject"], 1))
                break
        cases.append(
            ScopeCase(
                "counterfact",
                r["subject"],
                r["prompt"],
                r["target_new"],
                (r["prompt"], r["rephrase_prompt"]),
                tuple(negatives),
                (r["locality_prompt"],),
                clusters[i],
                r.get("ground_truth", ""),
            )
        )
    return cases[:limit] if limit else cases


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _answer(text) -> str:
    return " ".join(str(text or "").casefold().split())


def zsre_cases(path: Path, limit: int | None = None) -> list[ScopeCase]:
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    cases = []
    for r in records:
        if r["subject"] not in r["prompt"]:
            continue
        truth = r.get("ground_truth") or [""]
        truth = truth if isinstance(truth, list) else [truth]
        old = {_answer(t) for t in truth} - {""}
        spec = [
            p
            for p in (r.get("locality") or {}).get("Relation_Specificity", [])
            if r["subject"] in p["prompt"]
        ]
        same = [p["prompt"] for p in spec if old & {_answer(t) for t in _listed(p.get("ground_truth"))}]
        cases.append(
            ScopeCase(
                "zsre",
                r["subject"],
                r["prompt"],
                r["target_new"],
                (r["prompt"], r["rephrase_prompt"]),
                tuple(p["prompt"] for p in spec if p["prompt"] not in same),
                same_relation_labels=tuple(same),
                old=str(truth[0]),
            )
        )
    return cases[:limit] if limit else cases


def zsre_mend_cases(path: Path, limit: int | None = None, seed: int = 0) -> list[ScopeCase]:
    """zsRE-MEND cases; the same-subject negative is another record's question with this subject in it
    (zsRE spans hundreds of relations, so two records rarely share one: a little label noise)."""
    records = [
        r
        for r in json.loads(Path(path).read_text(encoding="utf-8"))
        if r["subject"] in r["src"] and str(r.get("alt") or "").strip()
    ]
    rng = random.Random(seed)
    cases = []
    for r in records:
        o = records[rng.randrange(len(records))]
        shape = o["src"].replace(o["subject"], "{}", 1)
        negative = (
            () if shape == r["src"].replace(r["subject"], "{}", 1) else (shape.replace("{}", r["subject"]),)
        )
        cases.append(
            ScopeCase("zsre-mend", r["subject"], r["src"], r["alt"], (r["src"], r["rephrase"]), negative)
        )
    return cases[:limit] if limit else cases


def distinct_subjects(cases: list[ScopeCase]) -> list[ScopeCase]:
    """One case per subject (a store holding two facts of one subject would test supersession, not scope)."""
    seen: set[str] = set()
    out = []
    for c in cases:
        if c.subject.casefold() not in seen:
            seen.add(c.subject.casefold())
            out.append(c)
    return out


def knowedit_wiki_cases(path: Path, limit: int | None = None) -> list[ScopeCase]:
    """KnowEdit WikiData train records (wiki_counterfact, wiki_recent): the edit prompt and its subject's
    other relations (`Relation_Specificity`), all in Wikidata label wording ("The occupation of X is").
    No paraphrases: they serve as same-subject negatives in the label form ZsRE's other relations take."""
    cases = []
    for r in json.loads(Path(path).read_text(encoding="utf-8")):
        if r["subject"] not in r["prompt"]:
            continue
        spec = [p["prompt"] for p in (r.get("locality") or {}).get("Relation_Specificity", [])]
        cases.append(
            ScopeCase(
                "knowedit-wiki",
                r["subject"],
                r["prompt"],
                str(r.get("target_new") or ""),
                (r["prompt"],),
                tuple(p for p in spec if r["subject"] in p),
            )
        )
    return cases[:limit] if limit else cases


_LABEL_CLOZE = re.compile(r"^The (?:name of the )?(?P<label>.+?) of X is$")


def short_label_form(template: str) -> str | None:
    """ "The name of the founder of X is" -> "X founder" (ZsRE words each other relation both ways)."""
    m = _LABEL_CLOZE.match(template)
    return f"X {m.group('label')}" if m else None
