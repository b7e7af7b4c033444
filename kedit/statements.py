"""Reading relation statements out of text with the relation vocabulary's cloze templates.

Used for instructions ("Assume the mother tongue of X is Y.") and for recognising which relation an
edit prompt expresses ("The mother tongue of {} is" -> P103).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# a sentence ends at . ! ? ; — but not after an initial ("Frank R. Strayer") or a title ("St. Louis")
_SENTENCE_END = re.compile(r"(?<=[.!?;])(?<!\b[A-Z]\.)(?<!\b(?:Dr|Mr|Ms|St|Jr|Sr)\.)(?<!\bMrs\.)\s+|\n+")
_LEAD_IN = re.compile(
    r"^(?:assume|suppose|imagine|note|remember|consider|pretend)(?:\s+that)?\s*[,:]?\s*", re.IGNORECASE
)


Names = Callable[[str], list[str]]  # text -> the stored entities it names (a linker's `candidates`)


@dataclass(frozen=True)
class Statement:
    subject: str
    relation: str
    object: str
    text: str


def _template_parts(cloze: str) -> tuple[str, str]:
    """(head, rest) patterns of a cloze template: the head up to the subject, and from the subject's end
    the rest (the template's tail, then the stated object)."""
    head, tail = (part.strip() for part in cloze.split("{}"))
    # a word-like tail must start after whitespace, so "is" never matches inside "Atlantis"
    glue = r"\s+" if tail[:1].isalnum() else r"\s*"
    # a question template states its answer after the question, with or without its question mark:
    # "Which family does X belong to? Noctuidae." / "Which family does X belong to Noctuidae."
    asks = tail.endswith("?")
    tail = re.escape(tail.rstrip("?").rstrip()) + (r"\??" if asks else "")
    return re.escape(head) + r"\s*", (glue + tail if tail else "") + r"\s+(?P<object>.+?)\s*[.!]?$"


def _template_regex(cloze: str) -> re.Pattern:
    head, rest = _template_parts(cloze)
    return re.compile(r"^" + head + r"(?P<subject>.+?)" + rest, re.IGNORECASE)


@lru_cache(maxsize=4096)
def _compiled(cloze: str) -> re.Pattern:
    return _template_regex(cloze)


@lru_cache(maxsize=4096)
def _rest(cloze: str) -> re.Pattern:
    return re.compile(_template_parts(cloze)[1], re.IGNORECASE)


_POSSESSIVE = re.compile(r"\s*['’]s$")


def _linked_subject(subject: str, names: Names) -> str | None:
    """`subject` as the store names it (a possessive "'s" dropped when only the bare name links), or None."""
    subject = subject.strip().rstrip(",;:")  # "Andy Kershaw, who is employed by": the name ends at the comma
    if names(subject):
        return subject
    bare = _POSSESSIVE.sub("", subject)
    return bare if bare != subject and names(bare) else None


def _split(cloze: str, sentence: str, match: re.Match, names: Names) -> tuple[str, str, bool]:
    """(subject, object, linked) for a sentence that `cloze` matches. The template's subject slot can end
    at several words ("What was the founding year of {}" + "Sigil Games Online 2002"): the longest span
    that names a stored entity wins; with none, the shortest (the lazy match)."""
    start = match.start("subject")
    rest = _rest(cloze)
    for end in range(len(sentence) - 1, match.end("subject") - 1, -1):
        if sentence[end - 1].isspace() or sentence[end].isalnum() and sentence[end - 1].isalnum():
            continue  # the subject ends at a word's end
        later = rest.match(sentence, end)
        subject = _linked_subject(sentence[start:end], names) if later is not None else None
        if later is not None and subject:
            return subject, later["object"], True
    subject = match["subject"].strip()
    linked = _linked_subject(subject, names)
    return linked or subject, match["object"], linked is not None


def parse_statements(text: str, relations, names: Names | None = None) -> list[Statement]:
    """Every (subject, relation, object) statement in `text` that matches a relation's cloze template.

    `names` (the store's `linker.candidates`: text -> the stored entities it names) settles where the
    subject ends: the longest span naming a stored entity, a possessive "'s" left off, and a statement
    whose subject is stored is preferred to one whose subject is not. Without it, or when no span links,
    the template that leaves the shortest subject wins.

    >>> from memory import RelationVocabulary
    >>> s = parse_statements("Assume that Danielle Darrieux is a citizen of Italy.", RelationVocabulary.builtin())[0]
    >>> s.subject, s.relation, s.object
    ('Danielle Darrieux', 'P27', 'Italy')
    >>> from memory import Relation
    >>> family = [Relation("L1", "family", "Which family does {} belong to?", "Which family does {} belong to?")]
    >>> [(s.subject, s.object) for s in parse_statements("Which family does Epaspidoceras belong to? Noctuidae.", family)]
    [('Epaspidoceras', 'Noctuidae')]
    >>> [s.object for s in parse_statements("Assume that Which family does Epaspidoceras belong to Noctuidae.", family)]
    ['Noctuidae']
    >>> founded = [Relation("L2", "founding year", "What was the founding year of {}?", "What was the founding year of {}?")]
    >>> stored = {"sigil games online": ["Sigil Games Online"]}
    >>> [(s.subject, s.object) for s in parse_statements("What was the founding year of Sigil Games Online 2002.",
    ...                                                  founded, lambda t: stored.get(t.casefold(), []))]
    [('Sigil Games Online', '2002')]
    """
    found: list[Statement] = []
    raws = [r for r in _SENTENCE_END.split(text or "") if r.strip()]
    # a template that holds a sentence break itself ("What does {} play? They play", a learned relation)
    # or ends in a question mark (its answer is the next sentence) is matched against a sentence and the
    # next one together
    spanning = [
        rel
        for rel in relations
        if _SENTENCE_END.search(rel.cloze.replace("{}", "X")) or rel.cloze.rstrip().endswith("?")
    ]
    skip = False
    for i, raw in enumerate(raws):
        if skip:
            skip = False
            continue
        best = _best_statement(raw, relations, names)
        if best is None and spanning and i + 1 < len(raws):
            best = _best_statement(f"{raw.strip()} {raws[i + 1].strip()}", spanning, names)
            skip = best is not None
        if best is not None:
            found.append(best)
    return found


def _best_statement(raw: str, relations, names: Names | None = None) -> Statement | None:
    sentence = _LEAD_IN.sub("", raw.strip())
    if not sentence:
        return None
    written, sentence = sentence, sentence[0].upper() + sentence[1:]
    # a stored subject first, then a template with a content word ("The {} is" reads any "The … is"), then
    # the template leaving the shortest subject and object (the most specific: "is located in the continent")
    best: tuple[bool, bool, int, int] | None = None
    found: Statement | None = None
    for rel in relations:
        m = _compiled(rel.cloze).match(sentence)
        if not m:
            continue
        subject, obj, linked = (
            _split(rel.cloze, sentence, m, names)
            if names is not None
            else (m["subject"].strip(), m["object"], False)
        )
        if sentence.startswith(subject):  # the subject as written ("fish and chips"), not capitalised
            subject = written[: len(subject)]
        rank = (linked, not _generic(rel.cloze), -len(subject), -len(obj.strip()))
        if best is None or rank > best:
            best, found = rank, Statement(subject, rel.id, obj.strip(), raw.strip())
    return found


def _shape(template: str) -> str:
    return " ".join(template.replace("{}", "X").lower().split())


PLACEHOLDER = "X"  # stands for the subject when a template is embedded
# Measured (python -m benchmarks.studies.relation_bench): on CounterFact-train edit prompts, right minus wrong
# answers peak at 0.80 (0.75: 48, 0.80: 50, 0.85: 49, 0.90: 33 of 167); held out on CounterFact-val
# prompts, accuracy 0.09 -> 0.44 (wrong 0.03 -> 0.15); MQuAKE single-hop questions stay at 1.000.
EMBEDDING_THRESHOLD = 0.8


@lru_cache(maxsize=4096)
def _text_regex(template: str) -> re.Pattern:
    """A question/cloze template as a whole-text pattern with the subject as a group."""
    head, tail = template.split("{}")
    tail = tail.strip().rstrip("?.").strip()
    glue = r"\s+" if tail[:1].isalnum() else r"\s*"
    head = head.strip()
    pattern = re.escape(head) + (r"\s+" if head[-1:].isalnum() else r"\s*") + r"(?P<subject>.+?)"
    return re.compile(
        r"^\s*" + pattern + (glue + re.escape(tail) if tail else "") + r"\s*[?.!]?\s*$", re.IGNORECASE
    )


_FUNCTION_WORDS = frozenset(
    "a an the is are was were of in on at to by for who whom whose what which where when "
    "does do did has have 's".split()
)


@lru_cache(maxsize=4096)
def _generic(template: str) -> bool:
    """A template with no content word ("The {} is", "Who is the {}?") matches almost any text that has
    the same shape, so it is not used to read a concrete text lexically (the embedding still may)."""
    words = re.findall(r"[a-z]+|'s", template.replace("{}", " ").lower())
    return all(w in _FUNCTION_WORDS for w in words)


_NAME_RUN = re.compile(
    r"(?:(?<=\s)|^)(?:[A-Z0-9][\w.'’&-]*)(?:\s+(?:(?:of|the|de|von|van|and|du|la|le)\s+)*[A-Z0-9][\w.'’&-]*)*"
)
_OPENERS = frozenset("the what which who whom whose where when how in on at a an is was does did do".split())


def _mask_names(text: str) -> str:
    """A concrete text with its names (runs of capitalised words) replaced by the placeholder, so that
    "Where did Ellie Kemper die?" is compared with the templates as "Where did X die?"."""

    def mask(m: re.Match) -> str:
        words = m.group().split()
        if m.start() == 0 and words[0].lower() in _OPENERS:
            rest = " ".join(words[1:])
            return words[0] + (" " + PLACEHOLDER if rest else "")
        return PLACEHOLDER

    return _NAME_RUN.sub(mask, text)


def _focus(text: str) -> str:
    """The sentence that carries the relation: the one holding `{}`, else the last one of at least
    four words (the question or the prompt after any lead-in context; "St. Louis" is no sentence end),
    without an "Assume that" lead-in."""
    parts = [p.strip() for p in _SENTENCE_END.split(text or "") if p.strip()] or [""]
    chosen = next((p for p in parts if "{}" in p), None)
    if chosen is None:
        chosen = parts[-1]
        for start in range(len(parts) - 1, -1, -1):
            chosen = " ".join(parts[start:])
            if len(parts[start].split()) >= 4:
                break
    return _LEAD_IN.sub("", chosen) or chosen


def _lexical(text: str, rels: list, generic: bool = False) -> str | None:
    """The relation whose template `text` instantiates; `generic=True` tries only the templates with no
    content word (a last resort after the embedding)."""
    if generic:  # only as a question: "The {} is" would read any "The ... is" sentence
        text = _focus(text)
        if "{}" in text or not text.endswith("?"):
            return None
        return next(
            (r.id for r in rels if _generic(r.question) and _text_regex(r.question).match(text)), None
        )
    if "{}" not in text:
        whole = _lexical_text(text.strip(), rels)
        return whole if whole is not None else _lexical_text(_focus(text), rels)
    shape = _shape(_focus(text))
    return next((r.id for r in rels if shape in (_shape(r.cloze), _shape(r.question))), None)


def _lexical_text(text: str, rels: list) -> str | None:
    best: tuple[int, str] | None = None  # the template leaving the shortest subject is the most specific
    for rel in rels:
        for template in (rel.question, rel.cloze):
            if _generic(template):
                continue
            m = _text_regex(template).match(text)
            if m and (best is None or len(m["subject"]) < best[0]):
                best = (len(m["subject"]), rel.id)
    if best is None:
        found = parse_statements(text, rels)  # a cloze statement with its object: "X is a citizen of Y."
        return found[0].relation if len(found) == 1 else None
    return best[1]


_TEMPLATE_VECTORS: dict[tuple, tuple[list[str], np.ndarray]] = {}


def _template_vectors(rels: list, embedder) -> tuple[list[str], np.ndarray]:
    """(relation id per row, unit vectors) of every relation's cloze and question template, cached."""
    key = (id(embedder), tuple((r.id, r.cloze, r.question) for r in rels))
    found = _TEMPLATE_VECTORS.get(key)
    if found is None:
        owners = [r.id for r in rels for _ in (0, 1)]
        texts = [t.replace("{}", PLACEHOLDER) for r in rels for t in (r.cloze, r.question)]
        if len(_TEMPLATE_VECTORS) >= 8:
            _TEMPLATE_VECTORS.clear()
        found = _TEMPLATE_VECTORS[key] = (owners, np.asarray(embedder.encode(texts), dtype=np.float32))
    return found


def nearest_relations(texts: list[str], relations, embedder) -> list[tuple[str, float]]:
    """For each text (a template with `{}`, or a concrete question/statement), the relation whose
    cloze or question template is nearest by sentence embedding, with that cosine similarity."""
    rels = list(relations)
    if not texts or not rels:
        return [("", 0.0) for _ in texts]
    owners, vectors = _template_vectors(rels, embedder)
    shown = [_focus(t) for t in texts]
    shown = [t.replace("{}", PLACEHOLDER) if "{}" in t else _mask_names(t) for t in shown]
    queries = np.asarray(embedder.encode(shown), dtype=np.float32)
    sims = queries @ vectors.T
    best = sims.argmax(axis=1)
    return [(owners[int(j)], float(sims[i, j])) for i, j in enumerate(best)]


def match_relations(
    texts: list[str], relations, embedder=None, threshold: float = EMBEDDING_THRESHOLD
) -> list[str | None]:
    """`match_relation` for many texts, embedding the ones the templates do not match in one batch."""
    rels = list(relations)
    found = [_lexical(t, rels) for t in texts]
    todo = [i for i, f in enumerate(found) if f is None]
    if embedder is not None and todo:
        for i, (rel_id, sim) in zip(todo, nearest_relations([texts[i] for i in todo], rels, embedder)):
            found[i] = rel_id if sim >= threshold else None
    return [f if f is not None else _lexical(t, rels, generic=True) for f, t in zip(found, texts)]


def match_relation(
    prompt_template: str, relations, embedder=None, threshold: float = EMBEDDING_THRESHOLD
) -> str | None:
    """The id of the relation that `prompt_template` expresses, or None.

    `prompt_template` is a template with `{}` for the subject ("The mother tongue of {} is"), or a
    concrete question or statement ("Which city was Ellie Kemper born in?"). Lexical first: a template
    whose wording equals a relation's cloze/question template, or a text that matches one with any
    subject (the most specific wins). Otherwise, when `embedder` is given, the relation whose cloze or
    question template is nearest by sentence embedding (names in a concrete text masked), if the cosine
    similarity reaches `threshold`. Last, the templates with no content word ("Who is the {}?").

    >>> from memory import RelationVocabulary
    >>> match_relation("Which city was Ellie Kemper born in?", RelationVocabulary.builtin())
    'P19'
    """
    return match_relations([prompt_template], relations, embedder, threshold)[0]
