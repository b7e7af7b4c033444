"""The official MQuAKE prompt files (princeton-nlp/MQuAKE `prompts/`) and the queries built from them.

- `multihop-prompts.txt` (standard few-shot, `Q: ... A: ...`) and `multihop-cot-prompts.txt`
  (`Question:` / `Thoughts:` / `Answer:`) ask multi-hop questions of an edited model;
- `rel-prompts.json` holds an 8-shot `Q: ... A: ...` prompt per Wikidata relation, used to test whether
  the model knows an unedited single-hop fact;
- `MeLLo-prompt.txt` is MeLLo's 4-demo decomposition prompt;
- `templates/{cloze,question}_templates.json` map relations to `[X]` templates.

>>> p = load_mquake_prompts()                                       # doctest: +SKIP
>>> p.multihop_query("Who is the spouse of the US president?").endswith("A:")   # doctest: +SKIP
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.data.loaders import BenchmarkDataError
from kedit.paths import require_data_dir


@dataclass(frozen=True)
class MQuAKEPrompts:
    """The prompt texts, read once."""

    multihop: str
    multihop_cot: str
    mello: str
    relations: dict[str, str]
    cloze_templates: dict[str, str] = field(default_factory=dict)
    question_templates: dict[str, str] = field(default_factory=dict)

    def multihop_query(self, question: str) -> str:
        """Standard few-shot query: the demos, then `Q: <question> A:` (answer runs to the newline)."""
        return f"{self.multihop.rstrip()}\nQ: {question} A:"

    def cot_query(self, question: str) -> str:
        """Chain-of-thought query: the demos, then `Question: ...` and `Thoughts:`."""
        return f"{self.multihop_cot.rstrip()}\n\nQuestion: {question}\nThoughts:"

    def relation_query(self, relation_id: str, question: str) -> str:
        """8-shot single-hop query for one relation (the MQuAKE probe of unedited facts)."""
        try:
            demos = self.relations[relation_id]
        except KeyError:
            raise BenchmarkDataError(f"rel-prompts.json has no prompt for relation {relation_id}") from None
        return f"{demos.rstrip()}\nQ: {question} A:"

    def mello_query(self, question: str) -> str:
        """MeLLo's start: the demos, a blank line, then `Question: <question>`."""
        return f"{self.mello.rstrip()}\n\nQuestion: {question}"


def default_prompts_dir() -> Path:
    return require_data_dir() / "MQuAKE" / "prompts"


def load_mquake_prompts(directory: str | Path | None = None) -> MQuAKEPrompts:
    """Read the prompt files from `directory` (default: `<shared data>/MQuAKE/prompts`)."""
    d = Path(directory) if directory is not None else default_prompts_dir()

    def text(name: str) -> str:
        try:
            return (d / name).read_text(encoding="utf-8")
        except OSError as exc:
            raise BenchmarkDataError(f"MQuAKE prompt file missing: {d / name} ({exc})") from None

    def mapping(name: str) -> dict[str, str]:
        try:
            data = json.loads(text(name))
        except json.JSONDecodeError as exc:
            raise BenchmarkDataError(f"{d / name}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise BenchmarkDataError(f"{d / name}: expected an object of strings")
        return data

    templates = d / "templates"
    return MQuAKEPrompts(
        multihop=text("multihop-prompts.txt"),
        multihop_cot=text("multihop-cot-prompts.txt"),
        mello=text("MeLLo-prompt.txt"),
        relations=mapping("rel-prompts.json"),
        cloze_templates=mapping("templates/cloze_templates.json") if templates.is_dir() else {},
        question_templates=mapping("templates/question_templates.json") if templates.is_dir() else {},
    )
