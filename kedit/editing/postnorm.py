"""Residual-stream targets through a post-MLP norm (Gemma 2/3), for MEMIT and AlphaEdit.

MEMIT spreads a residual-stream change R over its layers and solves for ΔW with ΔW k ≈ R, which assumes
the down_proj output is added to the residual as is (Llama, GPT-2). Gemma 2/3 normalise it first:
h ← h + g ⊙ m / rms(m), with m = W k the down_proj output and g = 1 + weight. Feeding R in residual
units to the solve then moves m by an amount unrelated to what reaches the residual (g spans 0 … 800
across dimensions on gemma3-270m): measured on 30 CounterFact single edits with layers 1–4, rewrite 0.0
and neighbourhood 0.27 (the model broke). The fix maps each request's residual share to the down_proj
output that produces it: the norm's output always satisfies rms(out / g) = 1, so the contribution
c' = c + R is reachable only up to scale; take u = m / rms(m) + R / g (= c'/g) and the multiple of u
closest to m (the smallest change of m). Dimensions where |g| is tiny carry no reachable change
(dividing by g there would blow the update up) and keep their current value.

>>> import torch
>>> norm = torch.nn.RMSNorm(4, eps=1e-6)
>>> with torch.no_grad():
...     _ = norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5]))
>>> m = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
>>> r = torch.tensor([[0.1, 0.0, -0.05, 0.02]])
>>> new = m + through_post_norm(r, m, norm).float()
>>> ratio = (norm(new) / (norm(m) + r)).detach()   # the new contribution is c + r up to one scale
>>> bool(torch.allclose(ratio, ratio.mean(), atol=1e-5)), round(float(ratio.mean()), 2)
(True, 0.99)
"""

from __future__ import annotations

import torch


def _eps(norm: torch.nn.Module) -> float:
    """ε of an RMS norm (`eps` in torch/Gemma, `variance_epsilon` in Llama-style modules)."""
    return float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 0.0)) or 0.0)


@torch.no_grad()
def norm_gain(norm: torch.nn.Module, width: int) -> torch.Tensor:
    """g of an RMS norm (its output is g ⊙ x / rms(x)), read off the module itself: norm(1) = g / √(1+ε)."""
    p = next(norm.parameters(), None)
    ones = torch.ones(1, width, dtype=p.dtype if p is not None else torch.float32)
    return norm(ones)[0].double() * (1.0 + _eps(norm)) ** 0.5


@torch.no_grad()
def through_post_norm(
    resid: torch.Tensor, m: torch.Tensor, norm: torch.nn.Module, min_gain: float = 1e-2
) -> torch.Tensor:
    """The down_proj-output change (n, d) whose normalised output adds ≈ `resid` (n, d) to the residual.

    `m` (n, d) is the current down_proj output at each request's subject_last.
    """
    m = m.double()
    resid = resid.double()
    g = norm_gain(norm, m.shape[1])
    usable = g.abs() >= min_gain * g.abs().median()
    unit = m * torch.rsqrt(m.pow(2).mean(-1, keepdim=True) + _eps(norm))  # = c / g, the current contribution
    u = unit + torch.where(
        usable, resid / torch.where(usable, g, torch.ones_like(g)), torch.zeros_like(resid)
    )
    scale = (m * u).sum(-1, keepdim=True) / u.pow(2).sum(-1, keepdim=True)
    # a contribution that flips against m (never for a share of a residual) falls back to m's norm
    fallback = m.norm(dim=-1, keepdim=True) / u.norm(dim=-1, keepdim=True)
    scale = torch.where(scale > 0, scale, fallback)
    return scale * u - m
