"""GU's retain-invariant projection (docs/methods.md §5.2, arXiv 2511.17100).

To first order a step Δθ changes the retain loss by ⟨g_r, Δθ⟩. An optimiser with diagonal
preconditioner H executes Δθ = −lr·H·d for a search direction d, so the step leaves every retain loss
unchanged iff ⟨g_r, d⟩_H = g_rᵀHd = 0 for all retain gradients: d must be H-orthogonal to
span(G), G = [g_r^(1) … g_r^(k)]. The H-orthogonal projection of the forget gradient g is

    Π⊥g = g − G (GᵀHG)⁻¹ GᵀH g.
"""

from __future__ import annotations

import torch


def h_inner(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
    """⟨a, b⟩_H = aᵀ diag(h) b for flat vectors (h None = identity metric).

    >>> float(h_inner(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), torch.tensor([1.0, 0.5])))
    7.0
    """
    return (a * b).sum() if h is None else (a * h * b).sum()


def project_orthogonal(
    g: torch.Tensor, retain: torch.Tensor, h: torch.Tensor | None = None, ridge: float = 1e-6
) -> torch.Tensor:
    """The component of `g` that is H-orthogonal to the span of the rows of `retain`.

    g: (P,) flat forget gradient. retain: (k, P), one retain gradient per row (zero rows are ignored).
    h: (P,) positive diagonal of the metric H, None for the identity (plain SGD). ridge: the k×k Gram
    matrix GᵀHG gets `ridge·trace/k` added to its diagonal, so nearly collinear retain gradients
    (two prompts of one relation) give a stable solve instead of amplifying noise.

    >>> g = torch.tensor([1.0, 1.0, 0.0]); r = torch.tensor([[1.0, 0.0, 0.0]])
    >>> [round(x, 4) for x in project_orthogonal(g, r).tolist()]
    [0.0, 1.0, 0.0]
    >>> h = torch.tensor([2.0, 1.0, 1.0]); p = project_orthogonal(g, r, h)
    >>> abs(float(h_inner(p, r[0], h))) < 1e-5      # H-orthogonal up to the ridge
    True
    """
    if retain.ndim != 2 or retain.shape[1] != g.shape[0]:
        raise ValueError(f"retain must be (k, {g.shape[0]}), got {tuple(retain.shape)}")
    if h is not None and h.shape != g.shape:
        raise ValueError(f"h must have shape {tuple(g.shape)}, got {tuple(h.shape)}")
    keep = retain.abs().amax(dim=1) > 0
    G = retain[keep]  # (k', P)
    if G.shape[0] == 0:
        return g.clone()
    HG = G if h is None else G * h  # rows are (H g_r)ᵀ
    # The k×k system is tiny; solving it in float64 keeps the orthogonality residual at rounding level.
    gram = (HG @ G.T).double()  # GᵀHG
    rhs = (HG @ g).double()  # GᵀHg
    lam = ridge * float(gram.diagonal().sum()) / gram.shape[0]
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    coeff = torch.linalg.solve(gram + lam * eye, rhs)
    return g - coeff.to(g.dtype) @ G
