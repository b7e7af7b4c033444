"""The method adapters the runners drive: apply a batch of facts, undo them, score and answer prompts.

A `Method` sees the model through four questions the benchmarks ask: teacher-forced scores of targets
(KnowEdit accuracies and locality), greedy answers (MQuAKE probes), EasyEdit's fluency sample, and the
multi-hop answer (official few-shot prompt by default; a memory method overrides it). Parametric methods
change the weights and keep the default questions; the store methods (`benchmarks.store_methods`: `rag`,
`mello`, `layer`) override them to add retrieved facts, run MeLLo, or ask `KnowledgeLayer.query`.

Only methods whose kedit API is present are registered; `unavailable_methods()` says what each missing one
waits for, and the CLI prints it.

>>> sorted(available_methods())          # doctest: +SKIP
['alphaedit', 'ft-l', 'layer', 'mello', 'memit', 'none', 'rag', 'rome']
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.cases import Fact
from benchmarks.generation import cut_at_stop, greedy_generate, sample_like_easyedit
from benchmarks.metrics import cot_answer, first_line_answer
from benchmarks.prompts import MQuAKEPrompts
from kedit.errors import EditError, KeditError
from kedit.scoring import TargetScore, score_targets

PARAMETRIC = ("rome", "memit", "alphaedit", "ft-l")


class MethodUnavailableError(KeditError):
    """The requested method is unknown, or the kedit API it needs is not there."""


@dataclass
class Applied:
    """What `Method.apply` did: the facts, the method's own record (for undo), an error if it failed."""

    facts: tuple[Fact, ...]
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
    def apply(self, facts: Sequence[Fact]) -> Applied:
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
        decode several edits' fluency samples in one batch (`benchmarks.generation.row_weights`). None:
        this method's sample is not the plain model's (the harness then calls `sample` case by case)."""
        return None

    @property
    def plain_sampler(self) -> bool:
        """Whether `sample` is the plain model's (not overridden, e.g. by a store method's context)."""
        return type(self).sample is Method.sample

    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TargetScore]:
        """Teacher-forced scores of `targets[i]` after `prompts[i]` (EasyEdit's accuracy protocol)."""
        return score_targets(self.bundle, list(prompts), list(targets))

    def generate(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> str:
        return greedy_generate(self.bundle, prompt, max_new_tokens, stop)

    def generate_lines(self, prompts: Sequence[str], max_new_tokens: Sequence[int],
                       stop_when: Sequence[Callable[[str], bool] | None] | None = None) -> list[str]:
        """`generate(prompt, n, stop=("\\n",))` for many prompts, batched (`kedit.runtime.generation.greedy_many`:
        the same greedy tokens). `stop_when[i]`, if given, may end prompt i's generation early once its
        verdict cannot change (see `benchmarks.mquake`)."""
        from kedit.runtime.generation import complete_many

        texts = complete_many(self.bundle, list(prompts), list(max_new_tokens), until="newline", stop_when=stop_when)
        return [cut_at_stop(t, ("\n",)) for t in texts]

    def answer_multihop_many(
        self, questions: Sequence[str], prompts: MQuAKEPrompts, cot: bool = False,
        max_new_tokens: Sequence[int] | None = None, stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[MultiHopAnswer]:
        """`answer_multihop` for many questions (the standard prompt batched; CoT one by one)."""
        budgets = list(max_new_tokens) if max_new_tokens is not None else [24] * len(questions)
        if cot:
            return [self.answer_multihop(q, prompts, cot=True, max_new_tokens=b) for q, b in zip(questions, budgets)]
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

    def apply(self, facts: Sequence[Fact]) -> Applied:
        return Applied(tuple(facts))

    def undo(self, applied: Applied) -> None:
        return None

    def row_weights(self, applied: Applied) -> dict[str, Any] | None:
        return {}


class ParametricMethod(Method):
    """ROME / MEMIT / AlphaEdit / FT-L through `kedit.editing.ParametricEditor` (weights change in place)."""

    def __init__(self, bundle, algorithm: str, sadr: bool = False) -> None:
        super().__init__(bundle)
        from kedit.editing import ParametricEditor

        self.name = algorithm
        self.algorithm = algorithm
        self.sadr = sadr
        self.editor = ParametricEditor(bundle)

    def settings(self) -> dict[str, Any]:
        """SADR on/off and the editor's hyper-parameters for this model (its family's defaults)."""
        from dataclasses import asdict

        from kedit.editing import default_config

        return {"sadr": self.sadr, "config": asdict(default_config(self.algorithm, self.bundle.spec.family))}

    def apply(self, facts: Sequence[Fact]) -> Applied:
        """Edit the facts the model does not already state; ParametricEditor refuses a request whose target
        already has teacher-forced accuracy 1.0, and for a benchmark such a fact is simply already in place."""
        from kedit.editing import EditRequest

        t0 = time.perf_counter()
        try:  # a malformed request (subject not in the prompt, ...) is an EditError too
            requests = [EditRequest(f.prompt, f.subject, f.target) for f in facts]
            before = score_targets(self.bundle, [r.text for r in requests], [r.target for r in requests])
            todo = [r for r, s in zip(requests, before) if s.accuracy < 1.0]
            record = self.editor.apply(todo, method=self.algorithm, sadr=self.sadr) if todo else None
        except EditError as exc:
            return Applied(tuple(facts), None, str(exc), time.perf_counter() - t0)
        return Applied(tuple(facts), record, None, time.perf_counter() - t0)

    def undo(self, applied: Applied) -> None:
        if applied.handle is not None:
            self.editor.undo(applied.handle)

    def row_weights(self, applied: Applied) -> dict[str, Any] | None:
        """Copies of the matrices the edit changed (the record's `changed` names), as edited."""
        if applied.handle is None:
            return {}
        model = self.bundle.model
        return {name: model.get_parameter(name).detach().clone() for name in applied.handle.changed}


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    benchmarks: tuple[str, ...]
    factory: Callable[..., Method] = field(repr=False)


def _has(module: str, *names: str) -> bool:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return False
    return all(hasattr(mod, n) for n in names)


def _registry() -> tuple[dict[str, MethodInfo], dict[str, str]]:
    both = ("knowedit", "mquake")
    available = {
        "none": MethodInfo("none", "no edit: the unedited model (baseline)", both, lambda b, sadr=False: NoEdit(b)),
    }
    missing: dict[str, str] = {}
    if _has("kedit.editing", "ParametricEditor", "EditRequest"):
        for algo in PARAMETRIC:
            available[algo] = MethodInfo(
                algo,
                f"{algo.upper()} weight edit via kedit.editing.ParametricEditor",
                both,
                lambda b, sadr=False, algo=algo: ParametricMethod(b, algo, sadr),
            )
    else:
        for algo in PARAMETRIC:
            missing[algo] = "waits for kedit.editing.ParametricEditor / EditRequest"
    if _has("kedit", "KnowledgeLayer", "Route"):
        available["rag"] = MethodInfo(
            "rag", "store only (no weight change); top retrieved facts prepended in context (ICE-style)", both,
            lambda b, sadr=False: _store_method("RagMethod", b),
        )
        available["mello"] = MethodInfo(
            "mello", "MeLLo loop (4 demos, <= 4 rounds) over a MiniLM store of the batch's edits", ("mquake",),
            lambda b, sadr=False: _store_method("MeLLoMethod", b),
        )
        available["layer"] = MethodInfo(
            "layer", "kedit.KnowledgeLayer: router (weights/store/both), answers from KnowledgeLayer.query", both,
            lambda b, sadr=False: _store_method("LayerMethod", b),
        )
    else:
        for name in ("rag", "mello", "layer"):
            missing[name] = "waits for kedit.KnowledgeLayer / kedit.Route"
    return available, missing


def _store_method(cls: str, bundle) -> Method:
    from benchmarks import store_methods

    return getattr(store_methods, cls)(bundle)


def available_methods(benchmark: str | None = None) -> dict[str, MethodInfo]:
    """Registered methods (for `benchmark` if given), by name."""
    available, _ = _registry()
    return {n: m for n, m in available.items() if benchmark is None or benchmark in m.benchmarks}


def unavailable_methods() -> dict[str, str]:
    """Methods named by the benchmarks that are not registered yet, with what each waits for."""
    return _registry()[1]


def resolve_method(name: str, benchmark: str, sadr: bool = False) -> MethodInfo:
    """The registry entry for `name`, or a clear error (unknown, not available yet, bad --sadr).

    Called before any model is loaded, so a wrong name costs nothing.
    """
    available = available_methods(benchmark)
    if name in available:
        if sadr and name not in ("rome", "memit", "alphaedit"):
            raise MethodUnavailableError(f"--sadr applies to rome, memit and alphaedit, not '{name}'")
        return available[name]
    missing = unavailable_methods()
    have = ", ".join(sorted(available))
    if name in missing:
        raise MethodUnavailableError(f"method '{name}' is not available: it {missing[name]} (available: {have})")
    raise MethodUnavailableError(f"unknown method '{name}' for {benchmark} (available: {have})")


def make_method(name: str, bundle, benchmark: str, sadr: bool = False) -> Method:
    """Build the adapter `name` on `bundle` (see `resolve_method` for the errors)."""
    return resolve_method(name, benchmark, sadr).factory(bundle, sadr=sadr)
