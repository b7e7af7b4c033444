"""The relation vocabulary: Wikidata-style ids with labels, aliases, a functional flag and templates.

The shipped list (`relations.json`) holds the 44 MQuAKE relations (cloze/question templates and
few-shot prompts from MQuAKE/prompts) and 5 CounterFact-only ones; custom relations can be registered.

>>> vocab = RelationVocabulary.builtin()
>>> vocab.resolve("P103").label
'native language'
>>> vocab.resolve("P27").cloze.format("Ellie Kemper")
'Ellie Kemper is a citizen of'
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from memory.errors import InvalidInputError, UnknownRelationError

BUILTIN_PATH = Path(__file__).with_name("relations.json")
_ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Relation:
    """A relation: `cloze` and `question` hold one `{}` for the subject."""

    id: str
    label: str
    cloze: str
    question: str
    functional: bool = True
    aliases: tuple[str, ...] = ()
    few_shot: str = field(default="", compare=False)
    source: str = "custom"

    def __post_init__(self) -> None:
        if not _ID_PATTERN.match(self.id):
            raise InvalidInputError(
                f"relation id {self.id!r} must be a letter then letters/digits/_ (like P103)"
            )
        if not self.label.strip():
            raise InvalidInputError(f"relation {self.id} needs a label")
        for name, template in (("cloze", self.cloze), ("question", self.question)):
            if template.count("{}") != 1:
                raise InvalidInputError(
                    f"relation {self.id}: {name} template must hold one '{{}}' for the subject"
                )

    def render(self, subject: str, obj: str | None = None) -> str:
        """The cloze sentence for `subject`, completed with `obj` when given."""
        text = self.cloze.format(subject)
        return f"{text} {obj}." if obj is not None else text

    def ask(self, subject: str) -> str:
        return self.question.format(subject)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "aliases": list(self.aliases),
            "functional": self.functional,
            "cloze": self.cloze,
            "question": self.question,
            "few_shot": self.few_shot,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, row: dict) -> Relation:
        return cls(
            id=row["id"],
            label=row["label"],
            cloze=row["cloze"],
            question=row["question"],
            functional=bool(row.get("functional", True)),
            aliases=tuple(row.get("aliases", ())),
            few_shot=row.get("few_shot", ""),
            source=row.get("source", "custom"),
        )


class RelationVocabulary:
    """Relations by id; `resolve` also accepts a label (case-insensitive)."""

    def __init__(self, relations: Iterable[Relation] = ()) -> None:
        self._by_id: dict[str, Relation] = {}
        self._by_label: dict[str, str] = {}
        for relation in relations:
            self.add(relation)

    @classmethod
    def builtin(cls) -> RelationVocabulary:
        data = json.loads(BUILTIN_PATH.read_text(encoding="utf-8"))
        return cls(Relation.from_json(row) for row in data["relations"])

    def add(self, relation: Relation) -> None:
        existing = self._by_id.get(relation.id)
        if existing is not None and existing != relation:
            raise InvalidInputError(
                f"relation {relation.id} is already defined differently ({existing.label!r})"
            )
        owner = self._by_label.get(relation.label.casefold())
        if owner is not None and owner != relation.id:
            raise InvalidInputError(f"label {relation.label!r} already names relation {owner}")
        self._by_id[relation.id] = relation
        self._by_label[relation.label.casefold()] = relation.id

    def resolve(self, key: str) -> Relation:
        """The relation with id or label `key`; UnknownRelationError (with suggestions) otherwise."""
        if not isinstance(key, str):
            raise UnknownRelationError(f"relation must be a string id or label, got {type(key).__name__}")
        found = self._by_id.get(key.strip()) or self._by_id.get(
            self._by_label.get(key.strip().casefold(), "")
        )
        if found is None:
            names = list(self._by_id) + [r.label for r in self._by_id.values()]
            close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else "; register it with a cloze and question template"
            )
            raise UnknownRelationError(f"unknown relation {key[:80]!r}{hint}")
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key.strip() in self._by_id or key.strip().casefold() in self._by_label
        )

    def __iter__(self) -> Iterator[Relation]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __getitem__(self, key: str) -> Relation:
        return self.resolve(key)
