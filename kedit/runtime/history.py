"""The live weight changes of one loaded model, in the order they were applied, and its base weights.

Undoing any change, wherever it is in the order, rebuilds each matrix it touched from the base weights
and re-applies the other live changes to that matrix in order: the result is bit for bit the model as if
that change had never been made, which is also what reopening a knowledge base rebuilds. No pre-edit
copy is kept: the base of a matrix is read from the model's safetensors (memory-mapped) when they hold
exactly the weights the model was loaded with; otherwise (a model changed in memory, or one with no
files) the first change to a matrix keeps one copy of that matrix only.

>>> import torch
>>> from kedit.runtime.deltas import Dense
>>> lin = torch.nn.Linear(2, 2, bias=False)
>>> h = WeightHistory(lin, None)
>>> w0 = lin.weight.detach().clone()
>>> h.step("a", "weight", Dense(torch.ones(2, 2))); h.step("b", "weight", Dense(torch.full((2, 2), 2.0)))
>>> with h.without(["b"]): torch.equal(lin.weight, w0 + 1.0)
True
>>> h.remove("a"); torch.equal(lin.weight, w0 + 2.0), h.live_ids
(True, ['b'])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kedit.errors import KeditError
from kedit.runtime.deltas import WeightDelta


class SafetensorsWeights:
    """Tensors of a model directory's safetensors files, read on demand (memory-mapped, never all)."""

    def __init__(self, directory: str | Path) -> None:
        from safetensors import safe_open

        self.directory = Path(directory)
        self._where: dict[str, Path] = {}
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            for name, file in json.loads(index.read_text())["weight_map"].items():
                self._where[name] = self.directory / file
        else:
            for file in sorted(self.directory.glob("*.safetensors")):
                with safe_open(str(file), framework="pt") as f:
                    self._where.update({name: file for name in f.keys()})  # noqa: SIM118 - not a dict

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def read(self, name: str, like: torch.Tensor) -> torch.Tensor | None:
        """The stored tensor `name` cast to `like`'s dtype and device, or None if absent or mis-shaped."""
        from safetensors import safe_open

        file = self._where.get(name)
        if file is None:
            return None
        with safe_open(str(file), framework="pt") as f:
            t = f.get_tensor(name)
        if t.shape != like.shape:
            return None
        return t.to(device=like.device, dtype=like.dtype)


@dataclass
class _Change:
    id: str
    steps: list[tuple[str, WeightDelta]] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.steps}


class WeightHistory:
    """Live changes of one model (`ModelBundle.history`): apply, register, remove, rebuild."""

    def __init__(self, model: nn.Module, weights_dir: str | Path | None) -> None:
        self.model = model
        self.weights_dir = Path(weights_dir) if weights_dir else None
        self._source: SafetensorsWeights | None = None
        self._changes: list[_Change] = []
        # base of each matrix some live change touches: None = read from the safetensors on demand
        self._base: dict[str, torch.Tensor | None] = {}
        # `without`'s rebuilt matrices for one set of left-out changes, kept while the live changes stay
        self._view: tuple[tuple[str, ...], frozenset[str], dict[str, torch.Tensor]] | None = None
        self._viewing = False

    @property
    def source(self) -> SafetensorsWeights | None:
        if (
            self._source is None
            and self.weights_dir is not None
            and any(self.weights_dir.glob("*.safetensors"))
        ):
            self._source = SafetensorsWeights(self.weights_dir)
        return self._source

    @property
    def live_ids(self) -> list[str]:
        return [c.id for c in self._changes]

    def names_of(self, change_id: str) -> set[str]:
        return self._find(change_id).names

    def later_touching(self, change_id: str) -> list[str]:
        """Ids of the live changes after `change_id` that touch one of its matrices."""
        at = self._index(change_id)
        names = self._changes[at].names
        return [c.id for c in self._changes[at + 1 :] if c.names & names]

    def __contains__(self, change_id: str) -> bool:
        return any(c.id == change_id for c in self._changes)

    def _index(self, change_id: str) -> int:
        for i, c in enumerate(self._changes):
            if c.id == change_id:
                return i
        raise KeditError(f"no live weight change {change_id!r} on this model")

    def _find(self, change_id: str) -> _Change:
        return self._changes[self._index(change_id)]

    def param(self, name: str) -> torch.Tensor:
        try:
            return self.model.get_parameter(name)
        except AttributeError as exc:
            raise KeditError(f"the model has no parameter {name!r}") from exc

    # -- base weights ---------------------------------------------------------------------------
    def _capture(self, name: str, before: torch.Tensor, copy: bool = True) -> None:
        """Note the base of `name` (its value `before` the first live change to it): nothing when the
        safetensors hold exactly it, else `before` itself (`copy=False`: a tensor nobody else changes)."""
        if name in self._base:
            return
        source = self.source
        if source is not None and name in source:
            stored = source.read(name, like=before)
            if stored is not None and torch.equal(stored, before):
                self._base[name] = None
                return
        self._base[name] = before.detach().clone() if copy else before

    def base(self, name: str) -> torch.Tensor:
        """The weights of `name` before every live change (a fresh tensor on the parameter's device)."""
        if name not in self._base:
            return self.param(name).detach().clone()  # no live change touches it
        held = self._base[name]
        if held is not None:
            return held.clone()
        stored = self.source.read(name, like=self.param(name)) if self.source is not None else None
        if stored is None:
            raise KeditError(f"the base weights of {name} can no longer be read from {self.weights_dir}")
        return stored

    @property
    def base_bytes(self) -> int:
        """Memory held in base copies (0 when the safetensors hold the base of every changed matrix)."""
        return sum(t.numel() * t.element_size() for t in self._base.values() if t is not None)

    @property
    def held_bytes(self) -> int:
        """Memory held for undo: base copies plus every live change's tensors (and `without`'s matrices)."""
        view = sum(t.numel() * t.element_size() for t in self._view[2].values()) if self._view else 0
        return self.base_bytes + view + sum(op.nbytes for c in self._changes for _, op in c.steps)

    # -- a view without some changes --------------------------------------------------------------
    @contextmanager
    def without(self, change_ids: Iterable[str]) -> Iterator[None]:
        """Inside the block the model is exactly as if `change_ids` had been undone (each matrix they touch
        rebuilt as `remove` rebuilds it) and afterwards exactly as before: the rebuilt matrices are swapped
        in and out (`param.data`), so nothing is recomputed while the live changes stay the same (one copy of
        each such matrix is kept for that). Changes cannot be made or undone inside the block."""
        skip = frozenset(change_ids) & set(self.live_ids)
        if not skip or self._viewing:
            yield
            return
        key = tuple(self.live_ids)
        if self._view is None or self._view[:2] != (key, skip):
            self._view = (key, skip, self._rebuilt_without(skip))
        params = {name: self.param(name) for name in self._view[2]}
        held = {name: p.data for name, p in params.items()}
        self._viewing = True
        try:
            for name, p in params.items():
                p.data = self._view[2][name]
            yield
        finally:
            for name, p in params.items():
                p.data = held[name]
            self._viewing = False

    @torch.no_grad()
    def _rebuilt_without(self, skip: frozenset[str]) -> dict[str, torch.Tensor]:
        names = {name for c in self._changes if c.id in skip for name in c.names}
        out = {}
        for name in sorted(names):
            matrix = self.base(name)
            for change in self._changes:
                if change.id not in skip:
                    for step_name, op in change.steps:
                        if step_name == name:
                            op.apply(matrix)
            out[name] = matrix
        return out

    def _changing(self) -> None:
        if self._viewing:
            raise KeditError("weights cannot be changed inside `WeightHistory.without`")
        self._view = None

    # -- changes --------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, change_id: str, name: str, op: WeightDelta) -> None:
        """Apply `op` to `name` now, as (the next step of) change `change_id`, the newest live change."""
        self._changing()
        if not self._changes or self._changes[-1].id != change_id:
            if change_id in self:
                raise KeditError(f"weight change {change_id!r} is live and not the newest: it cannot grow")
            self._changes.append(_Change(change_id))
        param = self.param(name)
        self._capture(name, param)
        op.apply(param)
        self._changes[-1].steps.append((name, op))

    def apply(self, change_id: str, steps: Iterable[tuple[str, WeightDelta]]) -> None:
        """Apply a whole change (e.g. one read back from disk) as the newest live change."""
        if change_id in self:
            raise KeditError(f"weight change {change_id!r} is already live on this model")
        for name, op in steps:
            self.step(change_id, name, op)

    def register(
        self, change_id: str, steps: Iterable[tuple[str, WeightDelta]], before: Mapping[str, torch.Tensor]
    ) -> None:
        """Record a change that is already in the weights (made by training); `before` holds the weights
        of every matrix it touched as they were before it (used as the base where needed, not copied)."""
        self._changing()
        if change_id in self:
            raise KeditError(f"weight change {change_id!r} is already live on this model")
        steps = list(steps)
        for name, _ in steps:
            self._capture(name, before[name], copy=False)
        self._changes.append(_Change(change_id, steps))

    def remove(self, change_id: str) -> None:
        """Take one change back, wherever it is: its matrices are rebuilt from base + the others, in order."""
        self._changing()
        change = self._changes.pop(self._index(change_id))
        self.rebuild(change.names)

    @torch.no_grad()
    def rebuild(self, names: Iterable[str]) -> None:
        for name in sorted(set(names)):
            param = self.param(name)
            param.copy_(self.base(name))
            touched = False
            for change in self._changes:
                for step_name, op in change.steps:
                    if step_name == name:
                        op.apply(param)
                        touched = True
            if not touched:
                self._base.pop(name, None)  # no live change left on it: nothing to keep
