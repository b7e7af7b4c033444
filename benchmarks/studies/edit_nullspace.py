"""How null is AlphaEdit's null space? Energy of keys inside the projector's subspace, per edit layer.

AlphaEdit's guarantee (Δ k₀ ≈ 0 for preserved keys k₀, docs/methods.md §3.1) needs a subspace that preserved keys
do not reach. This prints, for each default AlphaEdit layer of the model, the projector's dimension, the
share of the corpus second moment inside it (tr(PC)/tr(C), the `nullspace_energy` rule's target), and the
share ‖Pk‖²/‖k‖² of the MEMIT keys (subject's last token) of the first N editable CounterFact cases. When
the edited subjects' keys put about as much of their energy in the subspace as corpus keys do (or more),
the projection cannot spare neighbours without also blocking the edit: the update must grow in the same
directions that neighbouring subjects' keys use.

It also prints MEMIT's cross-talk between edited subjects at each layer: with λC dominating the solve,
edit j changes the output at key i by R_j · k_iᵀC⁻¹k_j / λ and its own by R_j · k_jᵀC⁻¹k_j / λ, so
ρ_ij = k_iᵀC⁻¹k_j / k_jᵀC⁻¹k_j is the share of a later edit's residual that lands on an earlier edited
subject (`crosstalk_mean` = mean |ρ_ij| over pairs i ≠ j; `whitened_cos_mean` = mean cosine of C^-1/2 k).
Large cross-talk means sequential batches overwrite each other unless past keys are kept (AlphaEdit).

    python -m benchmarks.studies.edit_nullspace --n 100
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.data.counterfact import editable_cases, request_of
from kedit.editing import ParametricEditor, default_config
from kedit.editing.memit import edited_keys
from kedit.runtime import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--energy", type=float, default=None, help="nullspace_energy (default: the config's)")
    a = ap.parse_args()
    bundle = load_model(a.model)
    cfg = default_config("alphaedit", bundle.spec.family)
    energy = a.energy if a.energy is not None else cfg.nullspace_energy
    editor = ParametricEditor(bundle)
    cases, _, _ = editable_cases(bundle, a.n)
    keys = edited_keys(bundle, [request_of(c) for c in cases], ["{}"], list(cfg.layers))
    for layer in cfg.layers:
        proj = editor.projector(layer, cfg.mom2_n_tokens, cfg.nullspace_threshold, energy)
        p = proj.matrix.double()
        c = editor.second_moments([layer], cfg.mom2_n_tokens)[layer].double()
        k = keys[layer].double()
        share = (p @ k).norm(dim=0) ** 2 / k.norm(dim=0) ** 2
        crosstalk, cos = _crosstalk(c, k)
        print(
            json.dumps(
                {
                    "model": a.model,
                    "layer": layer,
                    "energy_rule": energy,
                    "null_dim": proj.dim,
                    "d_ff": p.shape[0],
                    "corpus_share": round(float(torch.trace(p @ c) / torch.trace(c)), 4),
                    "subject_key_share_mean": round(float(share.mean()), 4),
                    "subject_key_share_min": round(float(share.min()), 4),
                    "subject_key_share_max": round(float(share.max()), 4),
                    "keys": k.shape[1],
                    "crosstalk_mean": round(crosstalk, 4),
                    "whitened_cos_mean": round(cos, 4),
                }
            )
        )


def _crosstalk(c: torch.Tensor, k: torch.Tensor) -> tuple[float, float]:
    """Mean |ρ_ij| (see module doc) and mean cosine of the whitened keys, over pairs i ≠ j."""
    ridge = 1e-6 * torch.trace(c) / c.shape[0]  # C is full rank here; the ridge only guards the solve
    g = k.T @ torch.linalg.solve(c + ridge * torch.eye(c.shape[0], dtype=c.dtype), k)  # G_ij = k_iᵀC⁻¹k_j
    d = g.diagonal()
    off = ~torch.eye(g.shape[0], dtype=torch.bool)
    rho = (g / d[None, :]).abs()[off]
    cos = (g / torch.sqrt(d[:, None] * d[None, :]))[off]
    return float(rho.mean()), float(cos.mean())


if __name__ == "__main__":
    main()
