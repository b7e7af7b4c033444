"""Frozen hyper-parameter dataclasses for every editing method, and the measured per-family defaults.

The reference values (METHODS §1-§4) are for 32-layer Llama models; the defaults here were chosen by
the sweep in `benchmarks/edit_sweep.py` on the two embedded models (results in `benchmarks/EDITING.md`).

>>> cfg = default_config("rome", "llama")
>>> cfg.layer, cfg.v_lr
(4, 0.5)
>>> from dataclasses import replace
>>> replace(cfg, layer=5).layer
5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from kedit.editing.precision import VALUE_DTYPES


@dataclass(frozen=True)
class ValueOptConfig:
    """Shared v*/z optimisation settings (METHODS §1.2 / §2.1)."""

    v_lr: float = 0.5
    v_num_grad_steps: int = 25
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    # Early stop once the total loss of a request is below this (ROME/MEMIT use 5e-2) ...
    loss_stop: float = 5e-2
    # ... or once every target token is the argmax on every rewriting prompt of the request and the
    # mean target probability is at least `argmax_stop_prob` (0 disables this stop). Measured in
    # benchmarks/EDITING.md: most ROME edits reach it in a fraction of the 25 steps.
    argmax_stop_prob: float = 0.0
    # (length_in_tokens, n_generated) groups of context templates; "{}" is always added.
    context_templates: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))
    # SADR (METHODS §4): weight w (the loss is scaled by 1e-4 * w), hinge head selection, and the
    # step budget used when SADR is on (the released scripts run more steps with it).
    sadr_weight: float = 100.0
    sadr_hinge: bool = True
    sadr_num_grad_steps: int = 25
    # Second-moment statistics: tokens of the Wikipedia corpus to average kk^T over.
    mom2_n_tokens: int = 100_000
    # Precision of the value-step products after the first step (precision.py): "auto" = bfloat16 on a
    # CPU with native bf16 products, else float32. Measured in benchmarks/EDITING.md (ROME speed): same
    # steps and outcomes, 1.4-1.5x faster on SmolLM2 (ROME and MEMIT).
    value_dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {', '.join(VALUE_DTYPES)}, not {self.value_dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["context_templates"] = [list(x) for x in self.context_templates]
        if "layers" in d:
            d["layers"] = list(d["layers"])
        return d


@dataclass(frozen=True)
class ROMEConfig(ValueOptConfig):
    """ROME: rank-one update of one layer's down_proj (METHODS §1)."""

    layer: int = 4
    mom2_adjustment: bool = False
    # Measured (benchmarks/EDITING.md): 6 templates instead of 21 and stopping once the target is the
    # argmax on every prompt with mean probability >= 0.5 keep rewrite accuracy at 1.0, 3x faster.
    context_templates: tuple[tuple[int, int], ...] = ((10, 5),)
    argmax_stop_prob: float = 0.5


@dataclass(frozen=True)
class MEMITConfig(ValueOptConfig):
    """MEMIT: batch update spread over `layers`; z optimised at the last of them (METHODS §2)."""

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


@dataclass(frozen=True)
class AlphaEditConfig(MEMITConfig):
    """AlphaEdit: MEMIT's residuals projected on the null space of preserved keys (METHODS §3)."""

    # Absolute τ (the reference's 2e-2 for Llama3-8B); None = derive τ per layer from the spectrum:
    # the null space is the smallest-eigenvalue directions holding at most `nullspace_energy` of tr(C)
    # (projection.py). An absolute τ does not transfer: on SmolLM2 τ=5e-3 left 9-262 dimensions over
    # layers 3-7 of the 100k-token statistics and the edits did not hold (rewrite 0.33 after 100
    # sequential edits). Measured on 100 sequential CounterFact edits (benchmarks/EDITING.md): energy
    # 0.1 (413-484 of 1536 dimensions), α=1 and MEMIT's value settings keep the edits (rewrite 0.98;
    # with λ'=0, neighbourhood level with MEMIT's at N=200, paired); smaller null spaces need larger updates, which
    # hurt neighbours (0.02: 0.830) and, with α=0.1, overwrite earlier edits; α=10 realises too little of z.
    nullspace_threshold: float | None = None
    nullspace_energy: float = 0.1
    l2: float = 1.0
    # λ' of a λ'·P C term in the solve: MEMIT's soft preservation of the corpus keys' energy that the
    # null space still holds (P C = the null-space part of C, P being C's spectral projector); 0 = AlphaEdit
    # as published. Measured (benchmarks/EDITING.md, blocks of 100 sequential edits): λ'=1000 keeps
    # neighbourhood above plain MEMIT's on both models (SmolLM2 +0.045 ± 0.018 over 399 cases, gemma3
    # +0.080 ± 0.027) where λ'=0 ties it; 300 gains less, 3000 stops the edits taking (rewrite 0.67).
    # Cost: paraphrase -0.05 on SmolLM2 (single edits: rewrite -0.02, no neighbourhood gain).
    mom2_in_nullspace: float = 1000.0


@dataclass(frozen=True)
class FTConfig:
    """FT-L: fine-tune one down_proj with an L-infinity bound on the weight change (baseline)."""

    layer: int = 4
    lr: float = 2e-3
    num_steps: int = 25
    # EasyEdit's Llama value (5e-5, lr 5e-4) barely moves a 135M model; measured in EDITING.md.
    norm_constraint: float = 5e-3
    loss_stop: float = 5e-2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EditConfig = ROMEConfig | MEMITConfig | AlphaEditConfig | FTConfig

CONFIG_CLASSES: dict[str, type] = {
    "rome": ROMEConfig,
    "memit": MEMITConfig,
    "alphaedit": AlphaEditConfig,
    "ft-l": FTConfig,
}
METHODS = tuple(CONFIG_CLASSES)


# Measured defaults (benchmarks/EDITING.md). Families without an entry use the class defaults,
# which are the SmolLM2 (llama, 30 layers) values.
_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "llama": {
        "rome": {"layer": 4},
        "memit": {"layers": (3, 4, 5, 6, 7)},
        "alphaedit": {"layers": (3, 4, 5, 6, 7)},
        "ft-l": {"layer": 4},
    },
    "gemma3": {
        # Gemma3's keys share a large common direction, so u = k̄/‖k̄‖ (EasyEdit's Llama setting) moves every
        # position: measured on Darrieux, v* reached p=0.98 through the hook but p stayed 0.06 after the
        # rank-one update. u = C⁻¹k̄ (original ROME) is the fix; see benchmarks/EDITING.md.
        # Layer 2 over 3 (N=200 paired, benchmarks/EDITING.md): neighbourhood +0.087 ± 0.028, with the edit
        # sentence in context +0.055, paraphrase -0.045, rewrite 0.995 vs 0.990.
        "rome": {"layer": 2, "mom2_adjustment": True},
        # MEMIT swept on 30 single CounterFact edits (benchmarks/EDITING.md): windows 1-4 / 2-5 / 3-6 x
        # λ 60 / 300 tie within one case (rewrite 0.93-0.97, neighbourhood 0.97-1.0); λ=1500 (SmolLM2's)
        # realised too little (rewrite 0.6 on 10). 2-5 and the larger λ of the tie (more weight on the
        # preserved keys, which matters once edits stack).
        "memit": {"layers": (2, 3, 4, 5), "mom2_update_weight": 300.0},
        # λ'=0 (AlphaEdit as published): λ'=1000 keeps neighbourhood above MEMIT's after 100 sequential
        # edits (+0.080 ± 0.027) but smothers a lone edit (single-edit rewrite 0.49 vs 0.86: the null space
        # is most of gemma3's key space, eigenvalues up to 0.045); λ'=200 ties λ'=0. benchmarks/EDITING.md.
        "alphaedit": {"layers": (2, 3, 4, 5), "mom2_in_nullspace": 0.0},
        # L-inf bound swept on 30 single CounterFact edits (benchmarks/EDITING.md): SmolLM2's 5e-3 gave
        # rewrite 1.0 but neighbourhood 0.23 on gemma3; 2e-4 keeps rewrite 0.9 at neighbourhood 0.9.
        "ft-l": {"layer": 3, "norm_constraint": 2e-4},
    },
}


def default_config(method: str, family: str) -> EditConfig:
    """The measured default config of `method` for a model family (see module docstring)."""
    if method not in CONFIG_CLASSES:
        raise ValueError(f"unknown editing method '{method}' (known: {', '.join(METHODS)})")
    overrides = _DEFAULTS.get(family, {}).get(method, {})
    return CONFIG_CLASSES[method](**overrides)


def config_from_dict(method: str, data: dict[str, Any]) -> EditConfig:
    """Rebuild a config saved by `to_dict()` (lists back to tuples)."""
    cls = CONFIG_CLASSES[method]
    names = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            continue
        if key == "context_templates":
            value = tuple(tuple(x) for x in value)
        elif key == "layers":
            value = tuple(value)
        kwargs[key] = value
    if cls is AlphaEditConfig and "mom2_in_nullspace" not in data:
        kwargs["mom2_in_nullspace"] = 0.0  # saved before the field existed: AlphaEdit as published
    return cls(**kwargs)
