"""The optimisation of one unlearning run (docs/methods.md §5): GU-projected NPO / GA / SimNPO steps.

Each step: one forward/backward pass over the forget and retain pairs yields the forget gradient and
every retain direction (`grads.GroupGradients`), and the same forward gives the early-stop check (every
forget target below the probability / rank thresholds). The forget direction is projected
H-orthogonal to the retain directions (projection.py), H being a diagonal Adam metric (optimizer.py),
and the step is W = W_pre + Δ with Δ += -lr·H·direction.

>>> from kedit.unlearning import Unlearner            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kedit.unlearning.config import UnlearnConfig
from kedit.unlearning.errors import UnlearnError
from kedit.unlearning.grads import GroupGradients
from kedit.unlearning.losses import AnswerBatch, answer_scores, ga_loss, nll_loss, npo_loss, simnpo_loss
from kedit.unlearning.optimizer import DiagonalAdamMetric
from kedit.unlearning.projection import project_orthogonal

Pair = tuple[str, str]
StepCallback = Callable[[int, dict], None]


def train(
    bundle,
    modules: dict[str, nn.Module],
    weights: dict[str, torch.Tensor],
    pre: dict[str, torch.Tensor],
    deltas: dict[str, torch.Tensor],
    forget_pairs: list[Pair],
    retain_pairs: list[Pair],
    cfg: UnlearnConfig,
    on_step: StepCallback | None,
) -> tuple[int, list[dict]]:
    """Run the optimisation in place on `weights` (kept equal to pre + deltas); returns steps, history.

    `modules`: the trained modules by name; `weights`, `pre`, `deltas`: their weights, the weights
    before the run and the change so far, by parameter name (`modules` key + '.weight').
    """
    model = bundle.model
    device = bundle.device
    batch = AnswerBatch.encode(bundle.tokenizer, forget_pairs + retain_pairs, device)
    nf, nr = len(forget_pairs), len(retain_pairs)
    k = min(cfg.n_retain_directions, nr)
    # Retain pairs beyond k are pooled round-robin: each direction is the mean gradient of its group.
    retain_groups = [torch.arange(nf + j, nf + nr, k, device=device) for j in range(k)]
    groups = [torch.arange(nf, device=device)] + retain_groups
    row_weight = torch.empty(nf + nr, device=device)
    row_weight[:nf] = 1.0 / nf
    for rows in retain_groups:
        row_weight[rows] = 1.0 / len(rows)
    group_share = torch.tensor([len(r) / nr for r in retain_groups], device=device) if k else None

    n_params = sum(w.numel() for w in weights.values())
    metric = DiagonalAdamMetric(n_params, cfg.adam_beta2, cfg.adam_eps, device=device)
    ref_logprob: torch.Tensor | None = None
    retain_ref: torch.Tensor | None = None
    history: list[dict] = []
    step = 0
    for step in range(cfg.max_steps + 1):  # noqa: B007 - `step` is the number of updates made
        with GroupGradients(modules) as capture:
            scores = answer_scores(model, batch)
            logprob = scores.logprob
            if not bool(torch.isfinite(logprob).all()):
                raise UnlearnError(
                    f"non-finite log-probabilities at step {step} (lr {cfg.lr} too large?); weights restored"
                )
            lp_f, lp_r = logprob[:nf], logprob[nf:]
            if ref_logprob is None:  # the frozen π_ref of NPO: the pre-unlearning model, computed once
                ref_logprob, retain_ref = lp_f.detach().clone(), lp_r.detach().clone()
            probs = lp_f.detach().exp()
            ranks = scores.first_rank[:nf]
            info = {
                "step": step,
                "max_target_prob": float(probs.max()),
                "min_target_rank": int(ranks.min()),
                "retain_mean_abs_change": float((lp_r.detach().exp() - retain_ref.exp()).abs().mean())
                if nr
                else 0.0,
            }
            done = all(cfg.is_forgotten(float(p), int(r)) for p, r in zip(probs, ranks))
            if done or step == cfg.max_steps:
                history.append(info)
                if on_step is not None:
                    on_step(step, info)
                break
            if cfg.objective == "npo":
                forget_terms = npo_loss(lp_f, ref_logprob, cfg.beta)
            elif cfg.objective == "ga":
                forget_terms = ga_loss(lp_f)
            else:
                forget_terms = simnpo_loss(lp_f, batch.lengths[:nf], cfg.beta, cfg.simnpo_delta)
            info["forget_loss"] = float(forget_terms.detach().mean())
            terms = torch.cat([forget_terms, nll_loss(lp_r, batch.lengths[nf:])])
            flat = capture.gradients((terms * row_weight).sum(), groups)
        if not bool(torch.isfinite(flat).all()):
            raise UnlearnError(f"non-finite gradients at step {step}; weights restored")
        g_forget, g_retain = flat[0], flat[1:]

        update = step_update(g_forget, g_retain, group_share, metric, cfg)
        if k:
            cos = (g_retain @ update) / (g_retain.norm(dim=1) * update.norm()).clamp_min(1e-30)
            info["retain_cos"] = float(cos.abs().max())
        history.append(info)
        if on_step is not None:
            on_step(step, info)

        with torch.no_grad():
            offset = 0
            for n, w in weights.items():
                size = w.numel()
                deltas[n].add_(update[offset : offset + size].view_as(w))
                offset += size
                # W = W_pre + Δ exactly (not W += update), so a record's pre + delta replays bit-exactly.
                w.copy_(pre[n] + deltas[n])
                if not bool(torch.isfinite(w).all()):
                    raise UnlearnError(f"non-finite weights in {n} at step {step}; weights restored")
    return step, history


def step_update(
    g_forget: torch.Tensor,
    g_retain: torch.Tensor,
    group_share: torch.Tensor | None,
    metric: DiagonalAdamMetric,
    cfg: UnlearnConfig,
) -> torch.Tensor:
    """-lr·H·direction: the forget gradient projected H-orthogonal to the retain directions (GU; plain
    when `cfg.projection` is off), plus the weighted retain gradient when `cfg.retain_weight` > 0."""
    if cfg.projection:
        # H is fixed from this step's raw gradients before projecting (optimizer module docstring).
        metric.observe(torch.cat([g_forget[None], g_retain]).square().amax(dim=0))
        h = metric.h()
        direction = project_orthogonal(g_forget, g_retain, h, cfg.ridge)
        if cfg.retain_weight > 0:
            direction = direction + cfg.retain_weight * (group_share @ g_retain)
    else:
        direction = g_forget
        if cfg.retain_weight > 0:
            direction = direction + cfg.retain_weight * (group_share @ g_retain)
        metric.observe(direction.square())
        h = metric.h()
    return -cfg.lr * h * direction
