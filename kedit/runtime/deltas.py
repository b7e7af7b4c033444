"""Weight changes stored as what they are: a low-rank product, a few changed rows, or a dense delta.

ROME, MEMIT and AlphaEdit change a matrix by ΔW = U V with rank ≤ the keys of the batch; FT-L changes
rows; unlearning runs change whole matrices. Each change is applied by one function (`apply`), the same
on the first application, on undo's rebuild from the base weights and on reopen, so replaying the same
changes onto the same base gives the same floats bit for bit. The sum is taken in float32 and rounded
once to the parameter's dtype (bf16/fp16 weights lose no more than that one rounding); a low-rank
product is formed in float64 and rounded once to float32.

>>> from abc import ABC, abstractmethod

import torch
>>> w = torch.zeros(3, 4)
>>> op = LowRank(torch.ones(3, 1), torch.arange(4.0)[None])
>>> op.apply(w); w[0].tolist(), op.nbytes
([0.0, 1.0, 2.0, 3.0], 28)
>>> Rows(torch.tensor([2]), torch.ones(1, 4)).dense((3, 4)).sum().item()
4.0
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

FINGERPRINT_SAMPLES = 65536


def _add(param: torch.Tensor, delta: torch.Tensor) -> None:
    """param += delta, summed in float32 and rounded once to the parameter's dtype."""
    if param.dtype == torch.float32 and delta.dtype == torch.float32:
        param.add_(delta)
    else:
        param.copy_((param.float() + delta.float()).to(param.dtype))


class WeightDelta(ABC):
    """One change to one parameter. Subclasses: `LowRank`, `Rows`, `Dense`."""

    kind: ClassVar[str]

    @abstractmethod
    def apply(self, param: torch.Tensor) -> None: ...

    @abstractmethod
    def dense(self, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """The change as a dense float32 tensor of the parameter's shape (for analysis, not storage);
        `shape` is needed for `Rows` only."""
        ...

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether the change applies to a parameter of this shape."""
        ...

    def finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self.tensors().values() if t.is_floating_point())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def to(self, device: torch.device | str) -> WeightDelta:
        return type(self)(**{k: v.to(device) for k, v in self.tensors().items()})

    @staticmethod
    def from_tensors(kind: str, tensors: dict[str, torch.Tensor]) -> WeightDelta:
        cls = {c.kind: c for c in (LowRank, Rows, Dense)}.get(kind)
        if cls is None:
            raise ValueError(f"unknown weight change kind {kind!r}")
        return cls(**tensors)


@dataclass(frozen=True)
class LowRank(WeightDelta):
    """ΔW = u @ v, with u (rows, r) and v (r, cols) in float32."""

    u: torch.Tensor
    v: torch.Tensor
    kind: ClassVar[str] = "lowrank"

    @torch.no_grad()
    def apply(self, param: torch.Tensor) -> None:
        _add(param, self.dense().to(param.device))

    def dense(self, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        # products of float32 factors are exact in float64 and the sum of r of them is rounded once to
        # float32: the same floats whatever order a BLAS sums in (bar a tie within 1e-16 of a float32
        # rounding boundary), so a knowledge base reopens bit-identically on another machine too
        return (self.u.double() @ self.v.double()).float()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"u": self.u, "v": self.v}

    def fits(self, shape: tuple[int, ...]) -> bool:
        return tuple(shape) == (self.u.shape[0], self.v.shape[1]) and self.u.shape[1] == self.v.shape[0]

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])


@dataclass(frozen=True)
class Rows(WeightDelta):
    """ΔW[index] = values: a change to some rows only (the others are left untouched, not added 0)."""

    index: torch.Tensor
    values: torch.Tensor
    kind: ClassVar[str] = "rows"

    @torch.no_grad()
    def apply(self, param: torch.Tensor) -> None:
        idx = self.index.to(param.device)
        part = param.index_select(0, idx)
        _add(part, self.values.to(param.device))
        param.index_copy_(0, idx, part)

    def dense(self, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if shape is None:
            raise ValueError("Rows.dense needs the parameter's shape")
        out = torch.zeros(shape, dtype=torch.float32, device=self.values.device)
        out[self.index] = self.values.float()
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"index": self.index, "values": self.values}

    def fits(self, shape: tuple[int, ...]) -> bool:
        in_range = self.index.numel() == 0 or (
            int(self.index.min()) >= 0 and int(self.index.max()) < shape[0]
        )
        return (
            tuple(self.values.shape[1:]) == tuple(shape[1:])
            and len(self.index) == len(self.values)
            and in_range
        )

    @staticmethod
    def of(delta: torch.Tensor) -> Rows:
        """The rows of a dense delta that are not all zero."""
        index = (delta != 0).flatten(1).any(1).nonzero().flatten()
        return Rows(index, delta[index].contiguous())


@dataclass(frozen=True)
class Dense(WeightDelta):
    """ΔW given in full (unlearning runs; edit records of format 1)."""

    delta: torch.Tensor
    kind: ClassVar[str] = "dense"

    @torch.no_grad()
    def apply(self, param: torch.Tensor) -> None:
        _add(param, self.delta.to(param.device))

    def dense(self, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        return self.delta.float()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"delta": self.delta}

    def fits(self, shape: tuple[int, ...]) -> bool:
        return tuple(self.delta.shape) == tuple(shape)


def factored(u: torch.Tensor, v: torch.Tensor) -> WeightDelta:
    """ΔW = u @ v as factors (float32), or dense where the factors would be larger than the matrix
    (a batch with more requests than the matrix has rows or columns)."""
    u, v = u.float().contiguous(), v.float().contiguous()
    rows, rank, cols = u.shape[0], u.shape[1], v.shape[1]
    if rank * (rows + cols) >= rows * cols:
        return Dense(LowRank(u, v).dense().contiguous())
    return LowRank(u, v)


def fingerprint(weight: torch.Tensor) -> dict:
    """Shape, dtype and a hash of an evenly spaced sample of a weight: enough to tell whether a change
    is being re-applied onto the weights it was made on, without keeping (or reading back) the matrix.

    >>> fingerprint(torch.zeros(2, 2))["dtype"]
    'float32'
    """
    flat = weight.detach().reshape(-1)
    n = flat.numel()
    if n > FINGERPRINT_SAMPLES:
        flat = flat[torch.linspace(0, n - 1, FINGERPRINT_SAMPLES, device=flat.device).long()]
    raw = flat.contiguous().cpu().view(torch.uint8).numpy().tobytes()
    return {
        "shape": list(weight.shape),
        "dtype": str(weight.dtype).removeprefix("torch."),
        "sample_sha256": hashlib.sha256(raw).hexdigest(),
    }


def fingerprint_mismatch(weight: torch.Tensor, expected: dict) -> str | None:
    """Why `weight` is not the weight `expected` was taken of (None when it is)."""
    now = fingerprint(weight)
    if now["shape"] != list(expected["shape"]):
        return f"shape {tuple(now['shape'])}, expected {tuple(expected['shape'])}"
    if now["dtype"] != expected["dtype"]:
        return f"dtype {now['dtype']}, but the change was made on {expected['dtype']} weights"
    if now["sample_sha256"] != expected["sample_sha256"]:
        return "its values differ from the weights the change was made on"
    return None
