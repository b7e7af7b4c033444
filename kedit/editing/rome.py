"""ROME: a rank-one update of one layer's down_proj that maps the subject's key to v* (docs/methods.md §1).

k̄ = mean key over the context templates (u = C⁻¹k̄ with mom2_adjustment), u ← u/‖u‖;
v* = m₀ + δ from the value optimisation; k* = key of the bare prompt;
ΔW = Λ uᵀ with Λ = (v* − W k*)/(k*ᵀu) = δ/(k*ᵀu), so that W' k* = v*; kept as the factors (Λ, uᵀ).

>>> from kedit import load_model                                         # doctest: +SKIP
>>> from kedit.editing import ParametricEditor, EditRequest              # doctest: +SKIP
>>> ed = ParametricEditor(load_model())                                  # doctest: +SKIP
>>> rec = ed.apply([EditRequest("{} is a citizen of", "Paris Hilton", "Germany")], method="rome")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kedit.editing.config import ValueOptConfig
from kedit.editing.edit_info import ValueRun
from kedit.editing.keys import mean_keys
from kedit.editing.registry import EditRun, register_method
from kedit.editing.requests import EditRequest
from kedit.editing.templates import context_templates
from kedit.editing.values import ValueResult, optimise_values
from kedit.errors import EditError
from kedit.runtime.deltas import LowRank, WeightDelta


@dataclass(frozen=True)
class ROMEConfig(ValueOptConfig):
    """ROME: rank-one update of one layer's down_proj (docs/methods.md §1)."""

    layer: int = 4
    mom2_adjustment: bool = False
    # Measured (benchmarks/EDITING.md): 6 templates instead of 21 and stopping once the target is the
    # argmax on every prompt with mean probability >= 0.5 keep rewrite accuracy at 1.0, 3x faster.
    context_templates: tuple[tuple[int, int], ...] = ((10, 5),)
    argmax_stop_prob: float = 0.5

    @property
    def edit_layers(self) -> tuple[int, ...]:
        return (self.layer,)


# Measured defaults (benchmarks/EDITING.md); the class defaults are SmolLM2's (llama, 30 layers).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"layer": 4},
    # Gemma3's keys share a large common direction, so u = k̄/‖k̄‖ (EasyEdit's Llama setting) moves every
    # position: measured on Darrieux, v* reached p=0.98 through the hook but p stayed 0.06 after the
    # rank-one update. u = C⁻¹k̄ (original ROME) is the fix; see benchmarks/EDITING.md.
    # Layer 2 over 3 (N=200 paired, benchmarks/EDITING.md): neighbourhood +0.087 ± 0.028, with the edit
    # sentence in context +0.055, paraphrase -0.045, rewrite 0.995 vs 0.990.
    "gemma3": {"layer": 2, "mom2_adjustment": True},
}


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
    change = (
        LowRank(u[None, :].T.contiguous(), lam.T.contiguous())
        if spec.down_proj_transposed
        else LowRank(lam.contiguous(), u[None, :].contiguous())
    )  # ΔW = Λ uᵀ, (d, d_ff) or its transpose
    return spec.down_proj_name(layer), change, vr


def apply_rome(run: EditRun, cfg: ROMEConfig, requests: list[EditRequest]) -> None:
    """Sequential ROME: each request is solved on the model with the previous ones applied."""
    bundle = run.bundle
    templates = context_templates(bundle, cfg.context_templates)
    inv = run.editor.inverse_second_moment(cfg.layer, cfg.mom2_n_tokens) if cfg.mom2_adjustment else None
    for req in requests:
        name, delta, vr = rome_delta(bundle, req, cfg, templates, inv, sadr=run.sadr)
        run.commit(name, delta)
        run.info.value_runs.append(ValueRun.of(vr))


register_method("rome", ROMEConfig, apply_rome, family_defaults=FAMILY_DEFAULTS)
