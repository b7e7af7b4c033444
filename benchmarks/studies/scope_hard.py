"""Hard scope negatives: two wordings that share a word or a topic and are known to ask different relations.

`training_pairs` leaves out every relation-label wording that shares a content word with a case's template:
a counterfact-train or zsRE-MEND template carries no relation id, so such a wording may name its own
relation. A scorer fitted on those pairs never sees "X place of burial" against "Which city did X die in?",
and lets topic overlap pass for the same relation. Here the relation of both sides is known:
- a KnowEdit WikiData train prompt states its relation by its Wikidata property label ("The name of the
  mother of X is"); Wikidata gives each property one label, so two labels name two relations, unless one's
  content stems hold the other's ("capital" / "capital city", "founder" / "founded by"): those are taken
  for one relation and never paired;
- a curated relation (`memory.RelationVocabulary.builtin`) has a Wikidata id, its label, question and cloze.
A label B is a hard negative of a template of relation A (label a) when B shares a content stem with a, or
when B is among the `nearest` labels to a by MiniLM cosine within a's own vocabulary (wiki labels among
themselves, curated relations among themselves: "mother" / "father"). Across vocabularies only a shared
stem counts, since a wiki label may be another name of a curated property ("alma mater" is P69 "educated
at"). B is dropped when all its stems occur in A's template or label: the template may then ask for B (the
curated P106 cloze "{} works in the field of" against "field of work"), and so is a curated label whose
relation shares a question or cloze with A's (P101 "field of work" shares that cloze with P106).

Kind "hard" (label 0). Held-out figures use the last `n_held` WikiData train cases, not fitted on.
"""

from __future__ import annotations

import random

import numpy as np

from benchmarks.data.scope_data import ScopeCase, short_label_form
from kedit.scope.head import content_stems
from kedit.scope.text import masked, masked_template


def label_forms(label: str) -> tuple[str, str]:
    """A relation label's two Wikidata-style wordings, masked ("The occupation of X is", "X occupation"):
    the form ZsRE's same-subject other-relation prompts take."""
    return f"The {label} of X is", f"X {label}"


def masked_prompt(text: str, subject: str) -> str:
    at = text.find(subject)
    return masked(text, at, at + len(subject))


def wiki_label(template: str) -> str | None:
    """The Wikidata label a masked KnowEdit prompt states ("The name of the mother of X is" -> "mother")."""
    short = short_label_form(template)
    return short[2:] if short is not None else None


def wiki_labels(cases: list[ScopeCase]) -> list[str]:
    """The labels of the KnowEdit WikiData cases' edit and other-relation prompts."""
    return sorted(
        {
            label
            for c in cases
            for q in (c.prompt, *c.same_subject_out)
            if (label := wiki_label(masked_prompt(q, c.subject)))
        }
    )


def _distinct(a: str, texts: list[str], b: str) -> bool:
    """Whether label `b` surely names another relation than label `a` worded as `texts`."""
    sa, sb = content_stems(a), content_stems(b)
    if not sb or sa <= sb or sb <= sa:
        return False
    shown = set(sa).union(*(content_stems(t) for t in texts))
    return not sb <= shown


def nearest_labels(embedder, labels: list[str], k: int) -> dict[str, list[str]]:
    """Each label's `k` nearest other labels, by MiniLM cosine of their cloze forms."""
    if len(labels) < 2:
        return {label: [] for label in labels}
    vectors = np.asarray(embedder.encode([label_forms(x)[0] for x in labels]), dtype=np.float32)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return {x: [labels[j] for j in np.argsort(-sims[i])[:k]] for i, x in enumerate(labels)}


def hard_labels(a: str, texts: list[str], pool: list[str], near: list[str]) -> list[str]:
    """The hard negatives of relation label `a` worded as `texts`: labels of `pool` sharing a stem with
    `a`, and `near` (nearest labels of `a`'s own vocabulary), that surely name another relation."""
    stems = content_stems(a)
    found = [b for b in pool if content_stems(b) & stems] + list(near)
    return sorted({b for b in found if b != a and _distinct(a, texts, b)})


def hard_pairs(
    cases: list[ScopeCase],
    relations,
    labels: list[str],
    embedder,
    per_case: int = 2,
    nearest: int = 3,
    seed: int = 7,
) -> list[tuple[str, str, int, str]]:
    """(template, query, 0, "hard"): for each KnowEdit WikiData case whose prompt states a label, `per_case`
    of its hard labels in both label forms; for each curated relation (when `relations` is given), its
    question and cloze against all its hard labels' forms, and each such label form against its question.
    `labels` are the wiki labels (`wiki_labels` of all the train cases, the pool and the nearest set)."""
    rng = random.Random(seed)
    rels = [r for r in relations if r.label]
    pool = sorted(set(labels) | {r.label for r in rels})
    near_wiki = nearest_labels(embedder, labels, nearest)
    pairs = []
    for c in cases:
        template = masked_prompt(c.prompt, c.subject)
        a = wiki_label(template)
        if a is None:
            continue
        hard = hard_labels(a, [template], pool, near_wiki.get(a, []))
        for b in rng.sample(hard, min(per_case, len(hard))):
            pairs += [(template, form, 0, "hard") for form in label_forms(b)]
    near_rel = nearest_labels(embedder, [r.label for r in rels], nearest)
    for r in rels:
        own = [masked_template(r.question), masked_template(r.cloze)]
        # a relation worded like this one (P106 and P101 share a cloze) is one relation to the scorer
        alike = {o.label for o in rels if {o.question, o.cloze} & {r.question, r.cloze}}
        for b in hard_labels(r.label, own, [x for x in pool if x not in alike], near_rel[r.label]):
            if b in alike:
                continue
            forms = label_forms(b)
            pairs += [(t, form, 0, "hard") for t in own for form in forms]
            pairs += [(form, own[0], 0, "hard") for form in forms]
    return pairs
