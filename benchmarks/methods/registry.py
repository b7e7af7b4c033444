"""Every benchmark method by name: what it is, which benchmarks it runs, and how to build it on a model.

An explicit table of direct imports (no lookup by string, no optional imports): a method the benchmarks name
is always available, and an unknown name is a `MethodUnavailableError` before any model is loaded.

>>> sorted(available_methods())
['alphaedit', 'ft-l', 'layer', 'mello', 'memit', 'none', 'rag', 'rome']
>>> sorted(available_methods("knowedit")) == sorted(set(available_methods()) - {"mello"})
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.methods.base import Method, NoEdit
from benchmarks.methods.layer import LayerMethod
from benchmarks.methods.mello import MeLLoMethod
from benchmarks.methods.parametric import PARAMETRIC, ParametricMethod
from benchmarks.methods.store import RagMethod
from kedit.errors import KeditError

SADR_METHODS = ("rome", "memit", "alphaedit")
_BOTH = ("knowedit", "mquake")


class MethodUnavailableError(KeditError):
    """The requested method is unknown, not run by that benchmark, or given a setting it has no use for."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    benchmarks: tuple[str, ...]
    factory: Callable[..., Method] = field(repr=False)


def _parametric(algorithm: str) -> MethodInfo:
    return MethodInfo(
        algorithm,
        f"{algorithm.upper()} weight edit via kedit.editing.ParametricEditor",
        _BOTH,
        lambda bundle, sadr=False: ParametricMethod(bundle, algorithm, sadr),
    )


METHODS: dict[str, MethodInfo] = {
    "none": MethodInfo(
        "none", "no edit: the unedited model (baseline)", _BOTH, lambda bundle, sadr=False: NoEdit(bundle)
    ),
    **{algorithm: _parametric(algorithm) for algorithm in PARAMETRIC},
    "rag": MethodInfo(
        "rag",
        "store only (no weight change); top retrieved facts prepended in context (ICE-style)",
        _BOTH,
        lambda bundle, sadr=False: RagMethod(bundle),
    ),
    "mello": MethodInfo(
        "mello",
        "MeLLo loop (4 demos, <= 4 rounds) over a MiniLM store of the batch's edits",
        ("mquake",),
        lambda bundle, sadr=False: MeLLoMethod(bundle),
    ),
    "layer": MethodInfo(
        "layer",
        "kedit.KnowledgeLayer: router (weights/store/both), answers from KnowledgeLayer.query",
        _BOTH,
        lambda bundle, sadr=False: LayerMethod(bundle),
    ),
}


def available_methods(benchmark: str | None = None) -> dict[str, MethodInfo]:
    """The methods (those `benchmark` runs, if given), by name."""
    return {n: m for n, m in METHODS.items() if benchmark is None or benchmark in m.benchmarks}


def resolve_method(name: str, benchmark: str, sadr: bool = False) -> MethodInfo:
    """The registry entry for `name`, or a clear error (unknown, not run by `benchmark`, bad --sadr).

    Called before any model is loaded, so a wrong name costs nothing.
    """
    available = available_methods(benchmark)
    have = ", ".join(sorted(available))
    if name not in available:
        raise MethodUnavailableError(f"unknown method '{name}' for {benchmark} (available: {have})")
    if sadr and name not in SADR_METHODS:
        raise MethodUnavailableError(f"--sadr applies to {', '.join(SADR_METHODS)}, not '{name}'")
    return available[name]


def make_method(name: str, bundle, benchmark: str, sadr: bool = False) -> Method:
    """Build the adapter `name` on `bundle` (see `resolve_method` for the errors)."""
    return resolve_method(name, benchmark, sadr).factory(bundle, sadr=sadr)
