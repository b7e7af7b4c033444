"""SADR: the selective attention-drift regulariser added to the v*/z loss (docs/methods.md §4).

Edits make heads over-attend to the edited subject whenever it is in context. SADR records each
layer's attention row at the query that predicts the first target token while δ=0 (A₀), and then
penalises KL(A₀‖A_δ) on the heads whose attention to the subject's last token has grown beyond the
largest initial attention to it (the "hinge" selection; all heads without hinge):

    L = w·1e-4 · Σ_ℓ (1/B) Σ_b Σ_{h∈H_b^ℓ} Σ_j A₀ log(A₀/A_δ)

Attention probabilities are read from the eager attention modules (their second output).

>>> t = AttentionTap.__name__
>>> t
'AttentionTap'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

EPS = 1e-8


class AttentionTap:
    """Captures, per layer, the attention rows at chosen query columns of chosen batch rows."""

    def __init__(self, bundle, layers: list[int]):
        self.bundle = bundle
        self.layers = layers
        self.rows: torch.Tensor | None = None  # batch rows to read
        self.query_cols: torch.Tensor | None = None  # query column per read row
        self.captured: dict[int, torch.Tensor] = {}

    @contextlib.contextmanager
    def active(self, rows: torch.Tensor, query_cols: torch.Tensor) -> Iterator[None]:
        self.rows, self.query_cols, self.captured = rows, query_cols, {}
        handles = []
        try:
            for l in self.layers:
                module = self.bundle.spec.attention_module(self.bundle.model, l)
                handles.append(module.register_forward_hook(self._hook(l)))
            yield
        finally:
            for h in handles:
                h.remove()

    def _hook(self, layer: int):
        def fn(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError(
                    "SADR needs attention probabilities: load the model with attn_implementation='eager'"
                )
            # (B, H, Q, K) -> (R, H, K) at each read row's query column
            self.captured[layer] = weights[self.rows, :, self.query_cols, :]

        return fn


def sadr_loss(
    current: dict[int, torch.Tensor],
    initial: dict[int, torch.Tensor],
    subject_key_col: int,
    row_request: torch.Tensor,
    n_requests: int,
    weight: float,
    hinge: bool,
) -> torch.Tensor:
    """Per-request SADR loss (n_requests,), from captured (R, H, K) rows of A_δ and A₀."""
    total = torch.zeros(n_requests, dtype=torch.float32)
    counts = torch.bincount(row_request, minlength=n_requests).clamp(min=1).float()
    for layer, a_cur in current.items():
        a0 = initial[layer]
        kl = (a0 * (torch.log(a0 + EPS) - torch.log(a_cur + EPS))).sum(-1)  # (R, H)
        if hinge:
            grown = a_cur[:, :, subject_key_col] > a0[:, :, subject_key_col].max(dim=1, keepdim=True).values
            kl = kl * grown.to(kl.dtype)
        per_row = kl.sum(1)
        total = total.index_add(0, row_request, per_row)
    return weight * 1e-4 * total / counts
