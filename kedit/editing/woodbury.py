"""Solves with a fixed matrix plus a rank-n part, the fixed matrix LU-factorised once (Woodbury).

Per layer and batch MEMIT solves (λC + KKᵀ) X = K and AlphaEdit (M + (PK)Kᵀ) X = PK with
M = P(K_pK_pᵀ + λ'C) + αI (docs/methods.md §2-§3). The fixed part A (λC, or M) is the same for every
batch while the statistics and the past edits are, so it is factorised once (`Factorised.of`, kept by
the editor) and each batch costs O(d²n) instead of a d×d product and factorisation (O(d³)):

    (A + U Vᵀ)⁻¹ U = Y (I + VᵀY)⁻¹,  Y = A⁻¹U

(A + UVᵀ) Y (I + VᵀY)⁻¹ = U (I + VᵀY)(I + VᵀY)⁻¹ = U. In float64 it agrees with the direct solve to
~1e-12 relative (tests/test_editing_woodbury.py), far below the float32 the update is written in.

>>> import torch
>>> a = torch.eye(3, dtype=torch.float64) * 2; u = torch.ones(3, 1, dtype=torch.float64)
>>> x_t = Factorised.of(a).solve_update(u, u)
>>> torch.allclose(x_t.T, torch.linalg.solve(a + u @ u.T, u))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Factorised:
    """The LU factors of a square float64 matrix A."""

    lu: torch.Tensor
    pivots: torch.Tensor

    @classmethod
    def of(cls, a: torch.Tensor) -> Factorised:
        lu, pivots = torch.linalg.lu_factor(a)
        return cls(lu, pivots)

    @property
    def nbytes(self) -> int:
        return self.lu.numel() * self.lu.element_size() + self.pivots.numel() * self.pivots.element_size()

    def solve_update(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Xᵀ (n, d) for the X (d, n) with (A + U Vᵀ) X = U; `u`, `v` (d, n)."""
        y = torch.linalg.lu_solve(self.lu, self.pivots, u)  # A⁻¹U, (d, n)
        small = torch.eye(u.shape[1], dtype=y.dtype, device=y.device) + v.T @ y  # I + VᵀY, (n, n)
        return torch.linalg.solve(small.T, y.T)  # Xᵀ = (I + VᵀY)⁻ᵀ Yᵀ
