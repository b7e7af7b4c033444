"""The retain projection of AlphaEdit: a projector onto the null space of the preserved keys (METHODS §3).

C = E[k₀k₀ᵀ] = U Σ Uᵀ; Û = eigenvectors with eigenvalue < τ; P = Û Ûᵀ. Any update of the form
Δ = Δ' P leaves the outputs of preserved keys unchanged: Δ k₀ ≈ 0. A projector of dimension 0 would
silently turn every update into 0, so it is an error.

>>> import torch
>>> c = torch.diag(torch.tensor([5.0, 3.0, 1e-4, 1e-5]))
>>> p = NullSpaceProjector.from_second_moment(c, threshold=1e-2)
>>> p.dim
2
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from kedit.errors import EditError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NullSpaceProjector:
    matrix: torch.Tensor  # (d_ff, d_ff)
    dim: int
    threshold: float

    @classmethod
    def from_second_moment(cls, c: torch.Tensor, threshold: float, layer: int | None = None) -> NullSpaceProjector:
        eigvals, eigvecs = torch.linalg.eigh(c.double())
        keep = eigvals < threshold
        dim = int(keep.sum())
        where = f" at layer {layer}" if layer is not None else ""
        if dim == 0:
            raise EditError(
                f"null space of the preserved keys{where} is empty at threshold {threshold:g} (smallest "
                f"eigenvalue {float(eigvals[0]):.3g}): raise nullspace_threshold"
            )
        u = eigvecs[:, keep]
        log.info("kedit: AlphaEdit null space%s: dim %d of %d (tau=%g)", where, dim, c.shape[0], threshold)
        return cls((u @ u.T).float(), dim, threshold)
