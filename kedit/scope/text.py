"""Text forms the scope decision compares: a prompt's relation template and a query with its subject masked.

>>> relation_template("Andy Kershaw, who is employed by", "Andy Kershaw")
'{}, who is employed by'
>>> masked("Shayna does this. Every morning, Andy Kershaw looks forward to work at", 33, 45)
'Every morning, X looks forward to work at'
"""

from __future__ import annotations

import functools
import re

PLACEHOLDER = "X"  # the subject's stand-in when a template or query is embedded
# a sentence ends at . ! ? ; followed by space, but not after an initial ("Frank R. Strayer") or a title
_SENTENCE_END = re.compile(r"(?<=[.!?;])(?<!\b[A-Z]\.)(?<!\b(?:Dr|Mr|Ms|St|Jr|Sr)\.)(?<!\bMrs\.)\s+|\n+")


# A relation phrase governing a noun phrase that goes on to name the subject: the input asks about
# something it reaches through the subject. Three shapes, each read before the subject's first mention:
# - a preposition (or "during", "after", ...) + "the <noun>" + a relative word: "... of the country that
#   X is a citizen of", "during the war in which X fought" ("the name of the team that X" is one hop);
# - a verb other than a copula + "the <noun>" + a relative word: "Who founded the company that
#   distributed X?", "What insect transmits the disease that caused X's death?" ("Who was the person
#   that X married?" is one hop);
# - a preposition + "the <noun>" right before the subject, whose clause goes on: "The capital of the
#   country X is associated with is", "in the year X was born" (`_REDUCED_AFTER` checks the clause);
# - "the same year/day ..." before the subject: "What event took place the same year X was launched?".
# "(the) name of ..." asks for the noun phrase itself and is one hop; "the common name for ..." is not.
_RELATIVE = r"(?:that|which|where|whose|who|whom|when)\b"
# an event of the subject itself is no hop: "a factor in the death of X", "responsible for the design of X"
_EVENT_OF = (
    r"(?:[\w'-]+\s+)?(?:death|birth|design|development|creation|discovery|founding|foundation|"
    r"establishment|inception|opening|approval|conviction|citizenship|construction|publication|release|"
    r"launch|completion|formation)\s+of\b"
)
_NESTED = re.compile(
    r"\b(?:(?<!\bname )of|in|for|from|at|by|on|with|to|during|after|before|since|until|throughout)\s+"
    rf"(?:the|a|an)\s+(?!{_EVENT_OF})(?:[\w'-]+\s+){{0,3}}?(?:{_RELATIVE}|of|by|to|with|in|for)\b",
    re.IGNORECASE,
)
_COPULA = r"(?:is|was|are|were|be|been|being|'s|the|a|an|of|name|what|which|who|whom|whose)"
_VERB_RELATIVE = re.compile(
    rf"(?<![\w'’])(?!{_COPULA}\b)[a-z][a-z'-]*\s+(?i:the)\s+(?:[\w'-]+\s+){{0,3}}?(?i:{_RELATIVE})"
)
_REDUCED = re.compile(
    r"\b(?:(?<!\bname )of|in|for|from|at|by|on|with|to|during)\s+the\s+"
    rf"(?!{_EVENT_OF})(?:(?!{_RELATIVE})[\w'-]+\s+){{1,3}}$",
    re.IGNORECASE,
)
# the clause after a reduced relative's subject: two words ("X was born", "X is associated with") or a
# verb that is no copula ("the college X attended"), where an apposition ends at once ("the university X is")
_REDUCED_AFTER = re.compile(
    r"^\s*(?:'s\s+)?(?:[\w'-]+\s+[\w'-]+|(?!(?:is|was|are|were|has|had|'s)\b)[a-z][\w'-]*\s*[?.!]?\s*$)"
)
_SAME = re.compile(r"\bthe\s+same\s+(?:year|day|month|decade|century|time|period|date)\b", re.IGNORECASE)


def nests_hops(text: str, subject_start: int, subject_end: int | None = None) -> bool:
    """Whether a relation phrase before the subject governs a noun phrase that goes on to name it: the
    input asks about something it reaches through the subject (the shapes are listed at `_NESTED`; the
    reduced relative "of the country X is associated with" is read only when `subject_end` is given).
    Measured by `python -m benchmarks.studies.nested_hops` (train wordings and MQuAKE dev).

    >>> nests_hops("Who is the head of state of the country that Ellie Kemper is a citizen of?", 46)
    True
    >>> nests_hops("What is the name of the country that Ellie Kemper is a citizen of?", 37)
    False
    >>> nests_hops("Who founded the company that distributed Simple Souls?", 41)
    True
    >>> nests_hops("Who was the person that Ellie Kemper married?", 24)
    False
    >>> q = "The name of the capital city of the country Goursez Vreizh is associated with is"
    >>> nests_hops(q, 44, 58), nests_hops("The mascot of the university Yale is", 29, 33)
    (True, False)
    """
    # the sentence that names the subject: CounterFact's paraphrases open with an unrelated one
    starts = [m.end() for m in _SENTENCE_END.finditer(text[:subject_start])]
    before = text[starts[-1] if starts else 0 : subject_start]
    if _NESTED.search(before):
        return True
    if _VERB_RELATIVE.search(before) or _SAME.search(before):
        return True
    if subject_end is None:
        return False
    return bool(_REDUCED.search(before) and _REDUCED_AFTER.match(text[subject_end:]))


# a value the input sets aside is not what it asks for: "The occupation of X, which is not geohasher, is"
# (KnowEdit's Forgetfulness prompts), "Which movie, other than The Last Days, did X direct?"
_EXCLUDING = (
    r"(?:(?:which|that|who)\s+(?:is|are|was|were)\s+not|other\s+than|besides|apart\s+from|"
    r"except(?:\s+for)?|rather\s+than|instead\s+of|aside\s+from)\s+(?:the\s+|a\s+|an\s+)?"
)


def excludes_value(text: str, value: str) -> bool:
    """Whether `text` sets `value` aside ("which is not V", "other than V", "besides V"): it asks for
    another value of the relation, so the fact holding `value` is not its answer.

    >>> excludes_value("The occupation of Martín Solares, which is not geohasher, is", "geohasher")
    True
    >>> excludes_value("The occupation of Martín Solares is", "geohasher")
    False
    """
    words = tuple(value.split())
    return bool(words) and _excluding(words).search(text) is not None


@functools.lru_cache(maxsize=4096)
def _excluding(words: tuple[str, ...]) -> re.Pattern[str]:
    """The compiled "sets V aside" pattern for one value: `decide` asks it of every candidate fact."""
    return re.compile(_EXCLUDING + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)


def relation_template(prompt: str, subject: str) -> str:
    """`prompt` with its subject as `{}` (a prompt that already holds `{}` is returned as it is).

    The subject is found case-insensitively; a prompt that does not name it gets `{}` prepended, so the
    template still has the one slot a relation needs.
    """
    if "{}" in prompt:
        return prompt.strip()
    at = prompt.casefold().find(subject.casefold())
    if at < 0:
        return "{} " + prompt.strip()
    return (prompt[:at] + "{}" + prompt[at + len(subject) :]).strip()


def masked(text: str, start: int, end: int) -> str:
    """The sentence of `text` holding the span [start, end), with the span replaced by the placeholder.

    CounterFact's paraphrases open with an unrelated sentence ("Shayna does this and Yossel goes still
    and dies. Danielle Darrieux, a native"); only the sentence naming the subject carries the relation.
    """
    out = text[:start] + PLACEHOLDER + text[end:]
    at = start
    pieces, offset = [], 0
    for m in _SENTENCE_END.finditer(out):
        pieces.append((offset, m.start()))
        offset = m.end()
    pieces.append((offset, len(out)))
    for s, e in pieces:
        if s <= at < max(e, s + 1):
            return out[s:e].strip()
    return out.strip()


def masked_template(template: str) -> str:
    """A relation template (`{}` for the subject) in the form queries are compared in."""
    return " ".join(template.replace("{}", PLACEHOLDER).split())
