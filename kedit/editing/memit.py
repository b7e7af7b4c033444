"""MEMIT: a batch of edits spread over several layers (METHODS §2), and the AlphaEdit variant.

z_i = h_i^L + δ_i is optimised at the residual output of the last edit layer L. Then for each layer l
(ascending, weights updated in place): K = MEMIT keys on the current model, H = current h^L of the bare
prompts, R = (Z − H)/(layers left), and

    MEMIT:     Δ = R Kᵀ (λC + KKᵀ)⁻¹                              (float64)
    AlphaEdit: Δᵀ = solve(P(KKᵀ + K_pK_pᵀ + λ'C) + αI, P K Rᵀ)    (Δ = ΔP, so Δ k₀ ≈ 0; λ' = 0 as published)

Both are R times a (n, d_ff) matrix: Δ is handed on as those two factors (rank ≤ n, `factored`), never
formed densely; AlphaEdit solves for P K (n right-hand sides) rather than P K Rᵀ (d of them).

>>> from kedit.editing import ParametricEditor, EditRequest   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kedit.editing.config import AlphaEditConfig, MEMITConfig
from kedit.editing.keys import SubjectRuns, build_rows, collect_at_subject, grouped_keys
from kedit.editing.postnorm import through_post_norm
from kedit.editing.requests import EditRequest
from kedit.editing.values import ValueResult, optimise_values
from kedit.errors import EditError
from kedit.runtime.deltas import WeightDelta, factored


def memit_apply(
    bundle,
    requests: list[EditRequest],
    cfg: MEMITConfig,
    templates: list[str],
    covs: dict[int, torch.Tensor] | None,
    apply: Callable[[str, WeightDelta], None],
    projectors: dict[int, torch.Tensor] | None = None,
    past: dict[int, torch.Tensor] | None = None,
    sadr: bool = False,
    keys_out: dict[int, torch.Tensor] | None = None,
) -> ValueResult:
    """Run MEMIT (or AlphaEdit when `projectors` is given), calling `apply(name, change)` per layer.

    `keys_out` (if given) receives the keys K (d_ff, n) of every layer; each is computed after the layers
    below it were updated and does not depend on its own or later layers, so they are the keys of the
    edited model (AlphaEdit's cache).
    """
    spec, tok = bundle.spec, bundle.tokenizer
    layers = sorted(cfg.layers)
    last = layers[-1]
    n = len(requests)
    vr = optimise_values(bundle, requests, templates, cfg, "residual", last, sadr=sadr)
    z = vr.init + vr.delta  # (n, d)
    rows = build_rows(tok, requests, templates, target=False, truncate=True)
    bare = torch.tensor([i for i, r in enumerate(rows) if r.template == 0])
    runs = SubjectRuns(bundle, rows)
    for t, layer in enumerate(layers):
        # Layers below the one updated last are unchanged: restart from the states entering it.
        resume = layers[t - 1] if t > 0 else None
        row_keys, outs = runs.collect([layer], [last], resume=resume, remember=layer)
        runs.saved.pop(resume, None)
        k = grouped_keys(rows, row_keys[layer], n).T.double()  # (d_ff, n)
        if keys_out is not None:
            keys_out[layer] = k.float().contiguous()
        cur = outs[last][bare].float()  # (n, d)
        resid = ((z - cur).T / (len(layers) - t)).double()  # (d, n)
        norm = spec.post_mlp_norm_module(bundle.model, layer)
        if norm is not None:  # Gemma 2/3: the residual share, in down_proj-output units
            m = row_keys[layer][bare].double() @ spec.down_weight(bundle.model, layer).double().T
            resid = through_post_norm(resid.T, m, norm).T
        if projectors is None:
            if covs is None:
                raise EditError("MEMIT needs the second-moment statistics of its layers")
            a = cfg.mom2_update_weight * covs[layer].to(k.device).double() + k @ k.T
            right = torch.linalg.solve(a, k).T  # Kᵀ A⁻¹ (A symmetric), (n, d_ff)
        else:
            if not isinstance(cfg, AlphaEditConfig):
                raise TypeError("projectors are an AlphaEdit setting: pass an AlphaEditConfig")
            p = projectors[layer].to(k.device).double()
            kkt = k @ k.T + (past[layer].to(k.device).double() if past and layer in past else 0.0)
            if cfg.mom2_in_nullspace:
                if covs is None:
                    raise EditError("AlphaEdit with mom2_in_nullspace > 0 needs the second-moment statistics")
                kkt = kkt + cfg.mom2_in_nullspace * covs[layer].to(k.device).double()
            lhs = p @ kkt + cfg.l2 * torch.eye(p.shape[0], dtype=torch.float64, device=k.device)
            right = torch.linalg.solve(lhs, p @ k).T  # Δ = R (lhs⁻¹ P K)ᵀ, (n, d_ff)
        if not (torch.isfinite(right).all() and torch.isfinite(resid).all()):
            raise EditError(f"non-finite update at layer {layer}; weights restored")
        change = factored(right.T, resid.T) if spec.down_proj_transposed else factored(resid, right)
        apply(spec.down_proj_name(layer), change)
    return vr


@torch.no_grad()
def edited_keys(bundle, requests: list[EditRequest], templates: list[str], layers: list[int]) -> dict[int, torch.Tensor]:
    """MEMIT keys (d_ff, n) of the requests at each layer on the current model (AlphaEdit's K_p cache)."""
    rows = build_rows(bundle.tokenizer, requests, templates, target=False, truncate=True)
    row_keys, _ = collect_at_subject(bundle, rows, list(layers))
    return {l: grouped_keys(rows, row_keys[l], len(requests)).T.contiguous() for l in layers}
