"""The normalised benchmark records every runner works on: one KnowEdit-style edit case, one MQuAKE case.

Loaders turn each on-disk format (KnowEdit ZsRE / WikiData_recent / WikiData_counterfact / WikiBio,
EasyEdit's flat CounterFact, MEND's zsRE, MQuAKE) into these dataclasses, so runners and metrics never
look at raw JSON.

>>> qa = QA("The capital of France is", ("Paris", "City of Light"))
>>> qa.answer
'Paris'
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QA:
    """A probe prompt and its gold answers; `answers[0]` is the one EasyEdit scores (its first alias)."""

    prompt: str
    answers: tuple[str, ...]

    @property
    def answer(self) -> str:
        return self.answers[0]


@dataclass(frozen=True)
class FactEdit:
    """One fact to write: `prompt` holds `{}` for the subject or contains the subject verbatim;
    `relation` is its Wikidata relation id when the data names one (MQuAKE), else None.

    >>> FactEdit("{} is a citizen of", "Ellie Kemper", "Croatia", "P27").statement
    'Ellie Kemper is a citizen of Croatia'
    """

    prompt: str
    subject: str
    target: str
    relation: str | None = None

    @property
    def statement(self) -> str:
        text = self.prompt.replace("{}", self.subject)
        return f"{text} {self.target}"


@dataclass(frozen=True)
class EditCase:
    """One KnowEdit-style case: the edit, and the probes EasyEdit scores after it.

    `locality` and `portability` map EasyEdit's key (e.g. `Relation_Specificity`, `Reasoning`) to the
    probes of that key; keys with no usable probe are absent.
    """

    case_id: str
    kind: str
    prompt: str
    subject: str
    target_new: str
    ground_truth: tuple[str, ...] = ()
    rephrase: tuple[str, ...] = ()
    locality: dict[str, tuple[QA, ...]] = field(default_factory=dict)
    portability: dict[str, tuple[QA, ...]] = field(default_factory=dict)
    source: str = ""
    index: int = 0

    @property
    def fact(self) -> FactEdit:
        return FactEdit(self.prompt, self.subject, self.target_new)


@dataclass(frozen=True)
class Rewrite:
    """One requested edit of an MQuAKE case (`requested_rewrite[i]`)."""

    prompt: str  # cloze template with `{}` for the subject
    subject: str
    target_new: str
    target_true: str
    relation_id: str
    question: str

    @property
    def cloze(self) -> str:
        return self.prompt.format(self.subject)

    @property
    def fact(self) -> FactEdit:
        return FactEdit(self.prompt, self.subject, self.target_new, self.relation_id or None)


@dataclass(frozen=True)
class Hop:
    """One single-hop fact of a chain, with the triple it comes from (Wikidata ids)."""

    question: str
    cloze: str
    answer: str
    aliases: tuple[str, ...]
    triple: tuple[str, str, str]
    edited: bool  # the triple is one of the case's requested edits

    @property
    def relation_id(self) -> str:
        return self.triple[1]


@dataclass(frozen=True)
class MQuAKECase:
    """One MQuAKE instance: its edits, 3 multi-hop questions, answers before/after, and both chains."""

    case_id: str
    requested_rewrite: tuple[Rewrite, ...]
    questions: tuple[str, ...]
    answer: str
    answer_alias: tuple[str, ...]
    new_answer: str
    new_answer_alias: tuple[str, ...]
    single_hops: tuple[Hop, ...]
    new_single_hops: tuple[Hop, ...]
    triples: tuple[tuple[str, str, str], ...]
    new_triples: tuple[tuple[str, str, str], ...]
    edit_triples: tuple[tuple[str, str, str], ...]
    new_triples_labeled: tuple[tuple[str, str, str], ...] = ()
    source: str = ""
    index: int = 0

    @property
    def facts(self) -> tuple[FactEdit, ...]:
        return tuple(r.fact for r in self.requested_rewrite)
