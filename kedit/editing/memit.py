"""MEMIT: a batch of edits spread over several layers (docs/methods.md §2); AlphaEdit reuses it.

z_i = h_i^L + δ_i is optimised at the residual output of the last edit layer L. Then for each layer l
(ascending, weights updated in place): K = MEMIT keys on the current model, H = current h^L of the bare
prompts, R = (Z − H)/(layers left), and

    MEMIT:     Δ = R Kᵀ (λC + KKᵀ)⁻¹                              (float64)
    AlphaEdit: Δᵀ = solve(P(KKᵀ + K_pK_pᵀ + λ'C) + αI, P K Rᵀ)    (Δ = ΔP, so Δ k₀ ≈ 0; λ' = 0 as published)

Both are R times a (n, d_ff) matrix, the `Solve` of the method (`memit_solve` here, `alphaedit_solve` in
alphaedit.py): Δ is handed on as those two factors (rank ≤ n, `factored`), never formed densely;
AlphaEdit solves for P K (n right-hand sides) rather than P K Rᵀ (d of them). The fixed part of each
solve (λC; P(K_pK_pᵀ + λ'C) + αI) is LU-factorised once and kept by the editor, and each batch adds its
rank-n part KKᵀ by Woodbury (woodbury.py).

>>> from kedit.editing import ParametricEditor, EditRequest   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kedit.editing.config import ValueOptConfig
from kedit.editing.edit_info import ValueRun
from kedit.editing.keys import SubjectRuns, build_rows, collect_at_subject, grouped_keys
from kedit.editing.postnorm import through_post_norm
from kedit.editing.registry import EditRun, register_method
from kedit.editing.requests import EditRequest
from kedit.editing.templates import context_templates
from kedit.editing.values import ValueResult, optimise_values
from kedit.editing.woodbury import Factorised
from kedit.errors import EditError
from kedit.runtime.deltas import WeightDelta, factored

# (layer, K (d_ff, n) in float64) -> the (n, d_ff) right factor of Δ = R · right
Solve = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MEMITConfig(ValueOptConfig):
    """MEMIT: batch update spread over `layers`; z optimised at the last of them (docs/methods.md §2)."""

    layers: tuple[int, ...] = (3, 4, 5, 6, 7)
    # λ of λC + KKᵀ. The reference 15000 is for d_ff≈16k; E[kᵀC⁻¹k] = d_ff, so it scales with d_ff.
    mom2_update_weight: float = 1500.0
    # Measured on 30 CounterFact edits in one batch (benchmarks/EDITING.md): 3 templates, lr 1.0 and the
    # argmax stop at p >= 0.9 keep rewrite 1.0 and most of the paraphrase score at 3.3x less value CPU
    # than 6 templates / lr 0.5 / loss-only stop; p >= 0.5 is faster again but z is then too weak to
    # survive the spread over layers at lr 0.5 (rewrite 0.82) and generalises less (paraphrase 0.21).
    context_templates: tuple[tuple[int, int], ...] = ((10, 2),)
    v_lr: float = 1.0
    argmax_stop_prob: float = 0.9
    sadr_weight: float = 50.0

    @property
    def edit_layers(self) -> tuple[int, ...]:
        return self.layers


# Measured defaults (benchmarks/EDITING.md); the class defaults are SmolLM2's (llama, 30 layers).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"layers": (3, 4, 5, 6, 7)},
    # Swept on 30 single CounterFact edits (benchmarks/EDITING.md): windows 1-4 / 2-5 / 3-6 x
    # λ 60 / 300 tie within one case (rewrite 0.93-0.97, neighbourhood 0.97-1.0); λ=1500 (SmolLM2's)
    # realised too little (rewrite 0.6 on 10). 2-5 and the larger λ of the tie (more weight on the
    # preserved keys, which matters once edits stack).
    "gemma3": {"layers": (2, 3, 4, 5), "mom2_update_weight": 300.0},
}


def memit_solve(
    cfg: MEMITConfig,
    covs: dict[int, torch.Tensor] | None,
    fixed: Callable[[int, Callable[[], torch.Tensor]], Factorised] | None = None,
) -> Solve:
    """MEMIT's right factor Kᵀ(λC + KKᵀ)⁻¹ of each layer. `fixed(layer, build)`, if given, returns the
    factorised λC of the layer (`build` makes it), e.g. kept by the editor: then the solve is the Woodbury
    update of those factors (woodbury.py), O(d_ff²n) instead of O(d_ff³)."""

    def solve(layer: int, k: torch.Tensor) -> torch.Tensor:
        if covs is None:
            raise EditError("MEMIT needs the second-moment statistics of its layers")

        def weighted() -> torch.Tensor:
            return cfg.mom2_update_weight * covs[layer].to(k.device).double()

        if fixed is not None:
            return fixed(layer, weighted).solve_update(k, k)  # Kᵀ A⁻¹, A = λC + KKᵀ symmetric
        return torch.linalg.solve(weighted() + k @ k.T, k).T  # Kᵀ A⁻¹ (A symmetric), (n, d_ff)

    return solve


def memit_apply(
    bundle,
    requests: list[EditRequest],
    cfg: MEMITConfig,
    templates: list[str],
    solve: Solve,
    apply: Callable[[str, WeightDelta], None],
    sadr: bool = False,
    keys_out: dict[int, torch.Tensor] | None = None,
) -> ValueResult:
    """Optimise z, then spread Δ = R · solve(layer, K) over the layers, calling `apply(name, change)` per layer.

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
        if resume is not None:
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
        right = solve(layer, k)
        if not (torch.isfinite(right).all() and torch.isfinite(resid).all()):
            raise EditError(f"non-finite update at layer {layer}; weights restored")
        change = factored(right.T, resid.T) if spec.down_proj_transposed else factored(resid, right)
        apply(spec.down_proj_name(layer), change)
    return vr


@torch.no_grad()
def edited_keys(
    bundle, requests: list[EditRequest], templates: list[str], layers: list[int]
) -> dict[int, torch.Tensor]:
    """MEMIT keys (d_ff, n) of the requests at each layer on the current model (AlphaEdit's K_p cache)."""
    rows = build_rows(bundle.tokenizer, requests, templates, target=False, truncate=True)
    row_keys, _ = collect_at_subject(bundle, rows, list(layers))
    return {l: grouped_keys(rows, row_keys[l], len(requests)).T.contiguous() for l in layers}


def note_batch(run: EditRun, vr: ValueResult, keys: dict[int, torch.Tensor], t_start: float) -> None:
    """Keep a MEMIT/AlphaEdit batch's edited keys and value statistics in the record being made."""
    # the edited keys: a later AlphaEdit update reads them as its cache of past keys (`past_keys`)
    run.extra.update({f"keys.{l}": k for l, k in keys.items()})
    run.info.value_runs.append(ValueRun.of(vr))
    run.info.update_s = time.perf_counter() - t_start - vr.seconds  # keys, residuals, solves


def apply_memit(run: EditRun, cfg: MEMITConfig, requests: list[EditRequest]) -> None:
    """One MEMIT batch over `cfg.layers` with the corpus second moments C of those layers."""
    templates = context_templates(run.bundle, cfg.context_templates)
    layers = sorted(cfg.layers)
    t_start = time.perf_counter()
    covs = run.editor.second_moments(layers, cfg.mom2_n_tokens)
    token = (cfg.mom2_n_tokens, cfg.mom2_update_weight)

    def fixed(layer: int, build: Callable[[], torch.Tensor]) -> Factorised:  # λC: the same every batch
        return run.editor.factorised(("memit", layer), token, build)

    keys: dict[int, torch.Tensor] = {}
    vr = memit_apply(
        run.bundle,
        requests,
        cfg,
        templates,
        memit_solve(cfg, covs, fixed),
        run.commit,
        sadr=run.sadr,
        keys_out=keys,
    )
    note_batch(run, vr, keys, t_start)


register_method("memit", MEMITConfig, apply_memit, family_defaults=FAMILY_DEFAULTS)
