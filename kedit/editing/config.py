"""The value-optimisation settings ROME, MEMIT and AlphaEdit share (docs/methods.md §1.2, §2.1).

Each method's own config subclasses `ValueOptConfig` in the method's module (rome.py, memit.py,
alphaedit.py; FT-L's in ft.py) and is registered with it (registry.py). The reference values
(docs/methods.md §1-§4) are for 32-layer Llama models; the defaults were chosen by the sweep in
`benchmarks/studies/edit_sweep.py` on the two embedded models (results in `benchmarks/EDITING.md`).

>>> from kedit.editing import default_config
>>> cfg = default_config("rome", "llama")
>>> cfg.layer, cfg.v_lr
(4, 0.5)
>>> from dataclasses import replace
>>> replace(cfg, layer=5).layer
5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kedit.editing.precision import VALUE_DTYPES


@dataclass(frozen=True)
class ValueOptConfig:
    """Shared v*/z optimisation settings (docs/methods.md §1.2 / §2.1)."""

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
    # SADR (docs/methods.md §4): weight w (the loss is scaled by 1e-4 * w), hinge head selection, and the
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
            raise ValueError(
                f"value_dtype must be one of {', '.join(VALUE_DTYPES)}, not {self.value_dtype!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["context_templates"] = [list(x) for x in self.context_templates]
        if "layers" in d:
            d["layers"] = list(d["layers"])
        return d
