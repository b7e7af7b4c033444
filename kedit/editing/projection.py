"""AlphaEdit's retain projection: a projector onto the null space of the preserved keys (docs/methods.md §3.1).

C = E[k₀k₀ᵀ] = U Σ Uᵀ; Û = eigenvectors with eigenvalue < τ; P = Û Ûᵀ. Any update of the form
Δ = Δ' P leaves the outputs of preserved keys unchanged: Δ k₀ ≈ 0. A projector of dimension 0 would
silently turn every update into 0, so it is an error.

τ is either absolute (`threshold`, the reference's `nullspace_threshold`=2e-2 for Llama3-8B) or derived
from the spectrum (`energy`): the null space is then the largest set of smallest-eigenvalue directions
whose eigenvalues sum to at most `energy`·tr(C), i.e. tr(PC)/tr(C) = E‖Pk₀‖²/E‖k₀‖² ≤ `energy`: the
fraction of the preserved keys' energy an update confined to the null space can still touch. An
absolute τ does not transfer between models, layers or corpus sizes (on SmolLM2-135M τ=5e-3 gives a
null space of 262 dimensions at layer 3 but 9 at layer 7 of the 100k-token statistics, 25–33 % of the
key space on the 20k-token ones); the energy fraction does (benchmarks/EDITING.md).

>>> import torch
>>> c = torch.diag(torch.tensor([5.0, 3.0, 1e-4, 1e-5]))
>>> p = NullSpaceProjector.from_second_moment(c, threshold=1e-2)
>>> p.dim
2
>>> NullSpaceProjector.from_second_moment(c, energy=1e-3).dim  # the two small ones hold 1.4e-5 of tr(C)
2
>>> NullSpaceProjector.from_second_moment(c, energy=1e-5).dim
1
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
    threshold: float  # the absolute τ used (derived from `energy` when that was given)
    energy: float  # tr(PC)/tr(C): share of the preserved keys' energy inside the null space

    @classmethod
    def from_second_moment(
        cls,
        c: torch.Tensor,
        threshold: float | None = None,
        layer: int | None = None,
        energy: float | None = None,
    ) -> NullSpaceProjector:
        """Projector on the eigenvectors of `c` below an absolute τ (`threshold`) or, if `threshold` is
        None, on the smallest-eigenvalue directions holding at most `energy` of tr(c)."""
        eigvals, eigvecs = torch.linalg.eigh(c.double())  # ascending
        where = f" at layer {layer}" if layer is not None else ""
        total = float(eigvals.clamp(min=0).sum())
        if threshold is not None:
            keep = eigvals < threshold
            rule = f"tau={threshold:g}"
        elif energy is not None:
            if not 0.0 < energy < 1.0:
                raise EditError(f"nullspace_energy must be in (0, 1), got {energy:g}")
            keep = eigvals.clamp(min=0).cumsum(0) <= energy * total
            rule = f"energy={energy:g}"
        else:
            raise EditError("AlphaEdit needs nullspace_threshold (absolute tau) or nullspace_energy")
        dim = int(keep.sum())
        if dim == 0:
            raise EditError(
                f"null space of the preserved keys{where} is empty at {rule} (smallest eigenvalue "
                f"{float(eigvals[0]):.3g}, {float(eigvals[0]) / total:.3g} of tr C): raise nullspace_threshold "
                "or nullspace_energy"
            )
        tau = float(eigvals[dim]) if threshold is None and dim < len(eigvals) else (threshold or float("inf"))
        share = float(eigvals[:dim].clamp(min=0).sum()) / total
        u = eigvecs[:, keep]
        log.info(
            "kedit: AlphaEdit null space%s: dim %d of %d (%s; tau=%.3g, %.3f of the preserved-key energy)",
            where,
            dim,
            c.shape[0],
            rule,
            tau,
            share,
        )
        return cls((u @ u.T).float(), dim, tau, share)
