"""Settings of one unlearning run (`UnlearnConfig`) and the default layer choice."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from kedit.unlearning.errors import UnlearnError

Objective = Literal["npo", "ga", "simnpo"]
OBJECTIVES: tuple[str, ...] = ("npo", "ga", "simnpo")

# Relative depths of the default trained MLP layers: layers 2-5 of SmolLM2-135M's 30. Chosen with
# `python -m benchmarks.studies.unlearn_bench --sweep-layers` (GU-NPO, 3 facts, windows 2-5 … 26-29): every
# window forgot the facts, 2-5 moved the held-out probes least (mean |Δp| 0.046 vs 0.08-0.12 later).
DEFAULT_LAYER_FRACTIONS: tuple[float, ...] = (2 / 30, 3 / 30, 4 / 30, 5 / 30)


# Learning rate and step cap for forgetting many facts in one run (`kedit bench forget`; its runs never
# bring all 100 facts under the thresholds, so they always run to the cap). Chosen with
# `python -m benchmarks.forget_sweep` on 100 known counterfact-train facts (GU-NPO, 100 held aside): the
# lowest VerbMem keeping >= 0.8 of both the held-aside facts and the locality probes answered before:
# lr 3e-4, 6 steps: VerbMem 0.35 -> 0.22, held-aside kept 0.80 (36/45), locality kept 0.95 (19/20);
# lr 1e-3 forgets more (0.18 at 3 steps, 0.09 at 6) but keeps 0.78 / 0.51 of the held-aside facts,
# lr 3e-3 (0.06 / 0.00) keeps 0.49 / 0.22; 12 steps at 3e-4: 0.17, held-aside 0.64
# (benchmarks/results/forget/sweep). A single fact (`kl.forget`) keeps UnlearnConfig's lr 1e-4 and its
# 40-step cap: its run stops as soon as the fact is under the thresholds.
MANY_FACTS_LR = 3e-4
MANY_FACTS_MAX_STEPS = 6


def default_layers(n_layers: int) -> tuple[int, ...]:
    """The MLP layers trained when `UnlearnConfig.layers` is None, scaled to the model's depth.

    >>> default_layers(30), default_layers(18)
    ((2, 3, 4, 5), (1, 2, 3))
    """
    return tuple(sorted({min(n_layers - 1, round(f * n_layers)) for f in DEFAULT_LAYER_FRACTIONS}))


@dataclass(frozen=True)
class UnlearnConfig:
    """How `Unlearner.forget` unlearns: objective, trained parameters, optimiser, stop and verify rules.

    The defaults are GU (docs/methods.md §5): NPO (beta 0.1) on the forget pairs, each step projected
    orthogonal to the retain gradients in the metric of an Adam optimiser with beta1 = 0.

    >>> cfg = UnlearnConfig(objective="ga", max_steps=20)
    >>> cfg.projection, cfg.params
    (True, ('down_proj',))
    >>> UnlearnConfig(n_retain_directions=9)
    Traceback (most recent call last):
    ...
    kedit.unlearning.errors.UnlearnError: n_retain_directions must be between 1 and 8, got 9
    """

    objective: Objective = "npo"
    beta: float = 0.1  # NPO / SimNPO inverse temperature
    simnpo_delta: float = 0.0  # SimNPO reward margin
    lr: float = 1e-4
    max_steps: int = 40
    # MLP layers whose parameters are trained; None = `default_layers(n_layers)`.
    layers: tuple[int, ...] | None = None
    # Linear sub-modules of each chosen MLP that are trained (names inside the MLP module).
    params: tuple[str, ...] = ("down_proj",)
    projection: bool = True  # GU: project the forget step orthogonal to the retain gradients
    n_retain_directions: int = 8  # retain pairs are split into at most this many gradient directions
    ridge: float = 1e-6  # relative ridge of the (GᵀHG) solve
    retain_weight: float = 0.0  # α of the joint objective α·g_r + Π⊥g_f (0 = forget step only)
    adam_beta2: float = 0.999
    # Pairs per forward/backward pass; more are run in length-sorted chunks whose gradients are summed
    # (the same step: the losses are per pair). Bounds memory: a pass holds ~30 MB of activations per
    # pair on SmolLM2-135M, so 1,000 facts at once would need ~30 GB in one pass.
    batch_rows: int = 128
    adam_eps: float = 1e-8
    # A forget pair counts as forgotten when its target prob <= target_max_prob and the first target
    # token's rank >= target_min_rank (0 = top prediction). Pairs already past both are "not known".
    target_max_prob: float = 0.02
    target_min_rank: int = 10
    # Verification fails if the retain probes' mean |Δprob| exceeds this budget.
    retain_budget: float = 0.1

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UnlearnError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        for name in ("beta", "lr", "adam_eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UnlearnError(f"{name} must be a positive finite number, got {value!r}")
        if not 0.0 <= self.adam_beta2 < 1.0:
            raise UnlearnError(f"adam_beta2 must be in [0, 1), got {self.adam_beta2}")
        if self.max_steps < 1:
            raise UnlearnError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.batch_rows < 1:
            raise UnlearnError(f"batch_rows must be at least 1, got {self.batch_rows}")
        if not 1 <= self.n_retain_directions <= 8:
            raise UnlearnError(f"n_retain_directions must be between 1 and 8, got {self.n_retain_directions}")
        if not (math.isfinite(self.retain_weight) and self.retain_weight >= 0):
            raise UnlearnError(f"retain_weight must be >= 0, got {self.retain_weight}")
        if not 0.0 < self.target_max_prob < 1.0:
            raise UnlearnError(f"target_max_prob must be in (0, 1), got {self.target_max_prob}")
        if self.target_min_rank < 0:
            raise UnlearnError(f"target_min_rank must be >= 0, got {self.target_min_rank}")
        if not self.retain_budget > 0:
            raise UnlearnError(f"retain_budget must be > 0, got {self.retain_budget}")
        if not self.params:
            raise UnlearnError("params must name at least one MLP sub-module (e.g. 'down_proj')")
        if self.layers is not None:
            if not self.layers or len(set(self.layers)) != len(self.layers):
                raise UnlearnError(f"layers must be distinct layer indices, got {self.layers}")
            # Stored as a tuple so the config stays hashable and JSON round-trips to an equal object.
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "params", tuple(self.params))

    def is_forgotten(self, prob: float, rank: int) -> bool:
        """Whether a target with this probability and first-token rank counts as forgotten."""
        return prob <= self.target_max_prob and rank >= self.target_min_rank

    def to_dict(self) -> dict:
        """JSON-ready form; `UnlearnConfig.from_dict` inverts it."""
        out = asdict(self)
        out["layers"] = list(self.layers) if self.layers is not None else None
        out["params"] = list(self.params)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> UnlearnConfig:
        data = dict(data)
        if data.get("layers") is not None:
            data["layers"] = tuple(data["layers"])
        data["params"] = tuple(data.get("params", ("down_proj",)))
        return cls(**data)
