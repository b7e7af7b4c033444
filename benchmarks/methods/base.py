"""The method adapter base the runners drive: apply a batch of facts, undo them, score and answer prompts.

A `Method` sees the model through four questions the benchmarks ask: teacher-forced scores of targets
(KnowEdit accuracies and locality), greedy answers (MQuAKE probes), EasyEdit's fluency sample, and the
multi-hop answer (official few-shot prompt by default; a memory method overrides it). Parametric methods
change the weights and keep the default questions (`benchmarks.methods.parametric`); the store methods
(`benchmarks.methods.store`: `rag`; `.mello`; `.layer`) override them to add retrieved facts, run MeLLo, or
ask `KnowledgeLayer.query`. `benchmarks.methods.registry` names them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.data.cases import FactEdit
from benchmarks.data.prompts import MQuAKEPrompts
from benchmarks.scoring.generation import (
    FluencyRequest,
    cut_at_stop,
    greedy_generate,
    sample_like_easyedit,
)
from benchmarks.scoring.metrics import cot_answer, first_line_answer
from kedit.scoring import TargetScore, score_targets


@dataclass
class Applied:
    """What `Method.apply` did: the facts, the method's own record (for undo), an error if it failed."""

    facts: tuple[FactEdit, ...]
    handle: Any = None
    error: str | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # recorded with each case (e.g. layer's routes)


@dataclass(frozen=True)
class MultiHopAnswer:
    """A multi-hop answer and the raw text it was read from."""

    answer: str | None
    raw: str


class Method(ABC):
    """Base adapter: default questions are asked of `bundle` (the possibly edited model) directly."""

    name: str = ""
    # MQuAKE probes and records this many cases of a batch at a time (None: the whole batch together)
    record_every: int | None = None

    def __init__(self, bundle) -> None:
        self.bundle = bundle

    @abstractmethod
    def apply(self, facts: Sequence[FactEdit]) -> Applied:
        """Write `facts` (together, as one batch); on failure leave the model as it was."""

    @abstractmethod
    def undo(self, applied: Applied) -> None:
        """Revert exactly what `apply` returned."""

    def settings(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Release what the method holds besides the model (a temporary store); idempotent."""
        return None

    def row_weights(self, applied: Applied) -> dict[str, Any] | None:
        """The weights `applied` changed, as they are now (call it before `undo`), so that the harness can
        decode several edits' fluency samples in one batch (`benchmarks.scoring.generation.row_weights`). None:
        the harness cannot sample this method's edited model that way and calls `sample` case by case."""
        return None

    def fluency_request(self, prompt: str) -> FluencyRequest:
        """What `sample` decodes for `prompt` as the model and store are now (call it before `undo`): the
        prompt alone here; a store method frames it with the facts it retrieves."""
        return FluencyRequest(prompt)

    @property
    def plain_sampler(self) -> bool:
        """Whether `sample` is the plain model's (not overridden, e.g. by a store method's context)."""
        return type(self).sample is Method.sample

    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TargetScore]:
        """Teacher-forced scores of `targets[i]` after `prompts[i]` (EasyEdit's accuracy protocol)."""
        return score_targets(self.bundle, list(prompts), list(targets))

    def generate(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> str:
        return greedy_generate(self.bundle, prompt, max_new_tokens, stop)

    def generate_lines(
        self,
        prompts: Sequence[str],
        max_new_tokens: Sequence[int],
        stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[str]:
        """`generate(prompt, n, stop=("\\n",))` for many prompts, batched (`kedit.runtime.generation.greedy_many`:
        the same greedy tokens). `stop_when[i]`, if given, may end prompt i's generation early once its
        verdict cannot change (see `benchmarks.runners.mquake`)."""
        from kedit.runtime.generation import complete_many

        texts = complete_many(
            self.bundle, list(prompts), list(max_new_tokens), until="newline", stop_when=stop_when
        )
        return [cut_at_stop(t, ("\n",)) for t in texts]

    def answer_multihop_many(
        self,
        questions: Sequence[str],
        prompts: MQuAKEPrompts,
        cot: bool = False,
        max_new_tokens: Sequence[int] | None = None,
        stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[MultiHopAnswer]:
        """`answer_multihop` for many questions (the standard prompt batched; CoT one by one)."""
        budgets = list(max_new_tokens) if max_new_tokens is not None else [24] * len(questions)
        if cot:
            return [
                self.answer_multihop(q, prompts, cot=True, max_new_tokens=b)
                for q, b in zip(questions, budgets)
            ]
        raws = self.generate_lines([prompts.multihop_query(q) for q in questions], budgets, stop_when)
        return [MultiHopAnswer(first_line_answer(r), r) for r in raws]

    def sample(self, prompt: str, seed: int) -> str:
        """EasyEdit's fluency text (top-k 5 sampling, 100 tokens in all)."""
        return sample_like_easyedit(self.bundle, prompt, seed=seed)

    def answer_multihop(
        self, question: str, prompts: MQuAKEPrompts, cot: bool = False, max_new_tokens: int = 24
    ) -> MultiHopAnswer:
        """Ask with the official few-shot multi-hop prompt (standard, or chain-of-thought).

        `max_new_tokens` bounds the standard answer line; a CoT answer gets its thoughts first (128).
        """
        if cot:
            raw = self.generate(prompts.cot_query(question), 128, stop=("\n\nQuestion:", "\nQuestion:"))
            return MultiHopAnswer(cot_answer(raw), raw)
        raw = self.generate(prompts.multihop_query(question), max_new_tokens, stop=("\n",))
        return MultiHopAnswer(first_line_answer(raw), raw)


class NoEdit(Method):
    """Baseline: nothing is written; every metric measures the unedited model."""

    name = "none"

    def apply(self, facts: Sequence[FactEdit]) -> Applied:
        return Applied(tuple(facts))

    def undo(self, applied: Applied) -> None:
        return None

    def row_weights(self, applied: Applied) -> dict[str, Any] | None:
        return {}
