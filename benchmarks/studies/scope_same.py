"""Same-relation scope pairs in label and relative-clause wording, from the train files and curated relations.

The KnowEdit WikiData train prompts ("The name of the country of citizenship of X is") have no
paraphrases: in the pairs of `benchmarks.studies.scope_calibrate` and the hard negatives of
`benchmarks.studies.scope_hard` they occur only with label 0, so a cross-encoder fitted on them learns that
"The name of the ... of X is" and its kin are out of scope of anything, and rejects in-scope wordings such
as "What is the name of the country that X is a citizen of?" against "X is a citizen of". Here the same
relation is taught in those wordings (label 1, kind "same"), each pair established without the validation
files:
- a WikiData train prompt's own wordings: the prompt ("The name of the mother of X is"), its label forms
  ("The mother of X is", "X mother") and question forms ("What is the name of the mother of X?", "What is
  the mother of X?"); a prompt with no label ("The name of the position held by X is") gets its question
  forms;
- a curated relation (`memory.RelationVocabulary.builtin`) whose label is a WikiData train label (equal
  content stems, or one of Wikidata's own aliases in `ALIASES`): its question and cloze against those
  wordings;
- a curated relation's relative-clause forms, built from its subject-first cloze ("X is a citizen of",
  "X was born in the city of") and the noun it asks for (the cloze's "the <noun> of", the question's
  "Which <noun>", else its label's head noun, "person" for "Who"): "What is the name of the country that
  X is a citizen of?", "The city where X was born is", against its question, cloze and label wordings;
- nested forms, where the relative clause is the inner hop of another relation's question ("What is the
  head coach of the city that X was born in?"), and the WikiData train records' two-hop prompts that
  nest the edited relation ("The name of the capital city of the place of death of X is" for "The place
  of death of X is", `portability.Reasoning`): in scope of the inner relation, whose fact a walk starts
  from (kedit/scope/model.py `ScopeModel.walk`), never labelled against the outer one.
Label 0 (kind "same_other"): a relative form against another curated relation's question and cloze, those
with the same noun first ("the country that X is a citizen of" against "Which country is X located in?").
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from benchmarks.data.scope_data import ScopeCase
from benchmarks.studies.scope_hard import label_forms, masked_prompt, wiki_label
from kedit.scope.head import content_stems
from kedit.scope.text import masked_template, nests_hops

# Wikidata's own aliases of a curated property, where the KnowEdit label is not the property's label
ALIASES = {"alma mater": "P69", "capital city": "P36", "founder": "P112"}
_NAME_PROMPT = re.compile(r"^The names? of the (?P<what>.+) (?:is|are)$")
_TRAILING_NOUN = re.compile(r"^(?P<verb>.+?) the (?P<noun>[a-z]+(?: [a-z]+)??)(?: of)?$")
_NOT_NOUN = r"(?!(?:is|was|are|were|does|do|did|has|kind)\b)"
_QUESTION_NOUN = re.compile(rf"^(?:Which|What) (?P<noun>{_NOT_NOUN}[a-z]+(?: {_NOT_NOUN}[a-z]+)?) ")
_PLACES = ("city", "country", "continent", "place")  # nouns a "where" clause can stand for


def wiki_wordings(template: str) -> list[str]:
    """A masked WikiData train prompt and its other wordings of the same relation."""
    out = [template]
    label = wiki_label(template)
    if label is not None:
        out += [*label_forms(label), f"What is the name of the {label} of X?", f"What is the {label} of X?"]
    elif (m := _NAME_PROMPT.match(template)) is not None:
        out += [f"What is the name of the {m['what']}?", f"What is the {m['what']}?"]
    return list(dict.fromkeys(out))


def curated_for(label: str, relations) -> list:
    """The curated relations a WikiData train label names (equal content stems, or `ALIASES`)."""
    stems = content_stems(label)
    return [
        r for r in relations if r.label and (content_stems(r.label) == stems or ALIASES.get(label) == r.id)
    ]


def relative_clause(relation) -> tuple[str, str] | None:
    """(noun, verb phrase) of a curated relation's subject-first cloze: "X is a citizen of" -> ("country",
    "is a citizen of"); "X was born in the city of" -> ("city", "was born in"); None when the cloze does
    not start with the subject or no noun is found."""
    cloze = masked_template(relation.cloze)
    if not cloze.startswith("X ") or cloze.startswith("X's"):
        return None
    verb = cloze[2:]
    if (m := _TRAILING_NOUN.match(verb)) is not None:
        return m["noun"], m["verb"]
    question = masked_template(relation.question)
    if (q := _QUESTION_NOUN.match(question)) is not None:
        return q["noun"], verb
    if question.startswith("Who ") and not question.startswith("Who or"):
        return "person", verb
    if relation.label and " of " in relation.label:
        return relation.label.split(" of ")[0], verb
    return None


def relative_forms(noun: str, verb: str) -> list[str]:
    """Relative-clause wordings of "X <verb>" asking for the <noun>: questions and a cloze."""
    out = [
        f"What is the name of the {noun} that X {verb}?",
        f"What is the {noun} that X {verb}?",
        f"Which is the {noun} that X {verb}?",
        f"The {noun} that X {verb} is",
        f"The name of the {noun} which X {verb} is",
    ]
    words = verb.split()
    if noun in _PLACES and len(words) >= 2 and words[-1] == "in":  # "the city where X was born"
        out += [f"What is the {noun} where X {' '.join(words[:-1])}?", f"The {noun} where X {verb[:-3]} is"]
    return out


def nested_forms(noun: str, verb: str, outer: list[str]) -> list[str]:
    """Questions whose inner hop is "the <noun> that X <verb>", asking another relation (`outer` labels)."""
    return [f"What is the {label} of the {noun} that X {verb}?" for label in outer]


def reasoning_pairs(path: Path, keep: set[tuple[str, str]]) -> list[tuple[str, str, int, str]]:
    """(edit prompt, two-hop prompt, 1, "same") of the KnowEdit WikiData train records of `path` whose
    (subject, prompt) is in `keep`: a `portability.Reasoning` prompt that reaches its answer through the
    edited fact ("The name of the capital city of the place of death of X is" for "The place of death of X
    is") nests the edit's relation as its inner hop, as the walk reads it (`kedit.scope.text.nests_hops`)."""
    pairs = []
    for r in json.loads(Path(path).read_text(encoding="utf-8")):
        subject, prompt = r["subject"], r["prompt"]
        if (subject, prompt) not in keep:
            continue
        template = masked_prompt(prompt, subject)
        for p in (r.get("portability") or {}).get("Reasoning") or []:
            text = p.get("prompt") if isinstance(p, dict) else None
            if isinstance(text, str) and subject in text and nests_hops(text, text.find(subject)):
                pairs.append((template, masked_prompt(text, subject), 1, "same"))
    return pairs


def same_pairs(
    cases: list[ScopeCase], relations, nested: int = 2, others: int = 3, seed: int = 11
) -> list[tuple[str, str, int, str]]:
    """(template, query, label, kind) of the module docstring, from the WikiData train `cases` (whose
    prompts are read for their wordings) and the curated `relations`."""
    rng = random.Random(seed)
    rels = [r for r in relations if r.label]
    templates = sorted(
        {
            masked_prompt(q, c.subject)
            for c in cases
            for q in (c.prompt, *c.same_subject_out)
            if c.subject in q
        }
    )
    pairs: list[tuple[str, str, int, str]] = []
    own: dict[str, list[str]] = {}  # a curated relation's wordings: question, cloze, label forms, wiki forms
    for r in rels:
        own[r.id] = [masked_template(r.question), masked_template(r.cloze), *label_forms(r.label)]
    for t in templates:
        words = wiki_wordings(t)
        pairs += [(a, b, 1, "same") for a in words for b in words if a != b]
        if (label := wiki_label(t)) is not None:
            for r in curated_for(label, rels):
                curated = own[r.id][:2]
                pairs += [(a, b, 1, "same") for a in curated for b in words]
                pairs += [(b, a, 1, "same") for a in curated for b in words]
                own[r.id] += [w for w in words if w not in own[r.id]]
    for r in rels:
        clause = relative_clause(r)
        if clause is None:
            continue
        noun, verb = clause
        forms = relative_forms(noun, verb)
        # a relation worded like this one (P106 and P101 share a cloze) is left unlabelled against it
        alike = {o.id for o in rels if {o.question, o.cloze} & {r.question, r.cloze}}
        pairs += [(w, f, 1, "same") for w in own[r.id] for f in forms]
        pairs += [(f, w, 1, "same") for w in own[r.id][:2] for f in forms]
        short = [
            o.label for o in rels if o.id not in alike and len(o.label.split()) <= 3 and "," not in o.label
        ]
        outer = rng.sample([x for x in short if "/" not in x], nested)
        pairs += [(w, f, 1, "same") for w in own[r.id][:2] for f in nested_forms(noun, verb, outer)]
        candidates = [o for o in rels if o.id not in alike]
        same_noun = [o for o in candidates if (c := relative_clause(o)) is not None and c[0] == noun]
        rest = [o for o in candidates if o not in same_noun]
        for o in same_noun + rng.sample(rest, min(others, len(rest))):
            pairs += [(w, f, 0, "same_other") for w in own[o.id][:2] for f in rng.sample(forms, 2)]
    return pairs
