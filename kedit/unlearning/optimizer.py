"""The diagonal Adam metric (beta1 = 0) that GU projects in and steps with.

With beta1 = 0, Adam's step is −lr·H·d with H = diag(1/(√v̂ + ε)) and v̂ the bias-corrected running
mean of squared gradients. GU projects d in this same metric, so the executed step is exactly
Euclidean-orthogonal to each retain gradient (see `projection`).

The metric must be fixed before the projection is computed (d depends on H), so v is updated from the
raw gradients of the step, not from the projected direction: with the elementwise maximum of the
squared forget and retain gradients, H is bounded on every coordinate the projection mixes in, which
keeps each coordinate's step O(lr) as in plain Adam.
"""

from __future__ import annotations

import torch


class DiagonalAdamMetric:
    """Running second moment over a flat parameter vector.

    >>> m = DiagonalAdamMetric(2)
    >>> m.observe(torch.tensor([4.0, 1.0]))
    >>> [round(x, 4) for x in m.h().tolist()]  # 1/(sqrt(v̂)+eps) after one step: 1/|g|
    [0.5, 1.0]
    """

    def __init__(self, n: int, beta2: float = 0.999, eps: float = 1e-8, device: torch.device | str = "cpu"):
        self.beta2 = beta2
        self.eps = eps
        self.v = torch.zeros(n, dtype=torch.float32, device=device)
        self.t = 0

    def observe(self, squared: torch.Tensor) -> None:
        """Fold this step's squared gradient into v (one optimiser step)."""
        self.t += 1
        self.v.mul_(self.beta2).add_(squared, alpha=1.0 - self.beta2)

    def h(self) -> torch.Tensor:
        """Diagonal of H = 1/(√v̂ + ε); all ones (identity) before the first observation."""
        if self.t == 0:
            return torch.ones_like(self.v)
        v_hat = self.v / (1.0 - self.beta2**self.t)
        return 1.0 / (v_hat.sqrt() + self.eps)
