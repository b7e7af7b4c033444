"""Text forms the scope decision compares: a prompt's relation template and a query with its subject masked.

>>> relation_template("Andy Kershaw, who is employed by", "Andy Kershaw")
'{}, who is employed by'
>>> masked("Shayna does this. Every morning, Andy Kershaw looks forward to work at", 33, 45)
'Every morning, X looks forward to work at'
"""

from __future__ import annotations

import re

PLACEHOLDER = "X"  # the subject's stand-in when a template or query is embedded
# a sentence ends at . ! ? ; followed by space, but not after an initial ("Frank R. Strayer") or a title
_SENTENCE_END = re.compile(r"(?<=[.!?;])(?<!\b[A-Z]\.)(?<!\b(?:Dr|Mr|Ms|St|Jr|Sr)\.)(?<!\bMrs\.)\s+|\n+")


# a relation phrase governing a noun phrase that goes on to name the subject: "... of the country that X
# is a citizen of", "... in the city where X was born" ("the name of the team that X" is one hop)
_NESTED = re.compile(
    r"(?<!name )\b(?:of|in|for|from|at|by|on|with|to)\s+(?:the|a|an)\s+(?:[\w'-]+\s+){0,3}?"
    r"(?:that|which|where|whose|who|whom|of|by|to|with|in|for)\b",
    re.IGNORECASE,
)


def nests_hops(text: str, subject_start: int) -> bool:
    """Whether a relation phrase before the subject governs a noun phrase that goes on to name it: the
    input asks about something it reaches through the subject. Measured on train wordings: 1.2 % of
    zsRE-MEND's questions and rephrasings, 0.2 % of CounterFact's prompts and paraphrases, none of MQuAKE's
    single-hop questions match; 28 % of MQuAKE's multi-hop questions do.

    >>> nests_hops("Who is the head of state of the country that Ellie Kemper is a citizen of?", 46)
    True
    >>> nests_hops("What is the name of the country that Ellie Kemper is a citizen of?", 37)
    False
    """
    return any(m.end() <= subject_start for m in _NESTED.finditer(text))


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
