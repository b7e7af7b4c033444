"""ROME: a rank-one update of one layer's down_proj that maps the subject's key to v* (METHODS §1).

k̄ = mean key over the context templates (u = C⁻¹k̄ with mom2_adjustment), u ← u/‖u‖;
v* = m₀ + δ from the value optimisation; k* = key of the bare prompt;
ΔW = Λ uᵀ with Λ = (v* − W k*)/(k*ᵀu) = δ/(k*ᵀu), so that W' k* = v*; kept as the factors (Λ, uᵀ).

>>> from kedit import load_model                                         # doctest: +SKIP
>>> from kedit.editing import ParametricEditor, EditRequest              # doctest: +SKIP
>>> ed = ParametricEditor(load_model())                                  # doctest: +SKIP
>>> rec = ed.apply([EditRequest("{} is a citizen of", "Paris Hilton", "Germany")], method="rome")  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from kedit.editing.config import ROMEConfig
from kedit.editing.keys import mean_keys
from kedit.editing.requests import EditRequest
from kedit.editing.values import ValueResult, optimise_values
from kedit.errors import EditError
from kedit.runtime.deltas import LowRank, WeightDelta


def rome_delta(
    bundle,
    request: EditRequest,
    cfg: ROMEConfig,
    templates: list[str],
    inv_cov: torch.Tensor | None = None,
    sadr: bool = False,
) -> tuple[str, WeightDelta, ValueResult]:
    """(parameter name, the rank-one change in the parameter's shape, value result); nothing applied."""
    spec, layer = bundle.spec, cfg.layer
    vr = optimise_values(bundle, [request], templates, cfg, "mlp", layer, key_layers=[layer], sadr=sadr)
    keys = vr.row_keys[layer]
    keys = keys.float()  # the solve in float32 whatever the model's dtype
    k_bar = mean_keys(vr.rows, keys, 1)[0]
    u = inv_cov.to(k_bar.device).float() @ k_bar if (cfg.mom2_adjustment and inv_cov is not None) else k_bar
    u = u / u.norm()
    k_star = keys[[i for i, r in enumerate(vr.rows) if r.template == 0][0]]
    denom = torch.dot(k_star, u)
    if not torch.isfinite(denom) or abs(float(denom)) < 1e-8:
        raise EditError("degenerate ROME key (k*·u ≈ 0); weights left untouched")
    lam = (vr.delta[0].float().to(u.device) / denom)[:, None]  # (d, 1)
    change = LowRank(u[None, :].T.contiguous(), lam.T.contiguous()) if spec.down_proj_transposed else LowRank(
        lam.contiguous(), u[None, :].contiguous())  # ΔW = Λ uᵀ, (d, d_ff) or its transpose
    return spec.down_proj_name(layer), change, vr
