"""The optimisation of one unlearning run (docs/methods.md §5): GU-projected NPO / GA / SimNPO steps.

Each step: one forward/backward pass over the forget and retain pairs (per chunk of `batch_rows` pairs,
gradients summed) yields the forget gradient and
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
from kedit.unlearning.losses import answer_scores, encode_chunks, row_terms
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
    # Length-sorted chunks of `batch_rows` pairs, gradients summed over chunks: one pass over 1,008 pairs
    # would hold ~30 GB of activations (forget_bench's 1,000-fact run peaks at ~5 GB chunked).
    chunks = encode_chunks(bundle.tokenizer, forget_pairs + retain_pairs, cfg.batch_rows, device)
    nf, nr = len(forget_pairs), len(retain_pairs)
    k = min(cfg.n_retain_directions, nr)
    # Retain pairs beyond k are pooled round-robin: each direction is the mean gradient of its group.
    group_of = torch.zeros(nf + nr, dtype=torch.long, device=device)
    group_of[nf:] = 1 + torch.arange(nr, device=device) % max(k, 1)
    row_weight = torch.empty(nf + nr, device=device)
    row_weight[:nf] = 1.0 / nf
    for rows in (torch.arange(nf + j, nf + nr, k, device=device) for j in range(k)):
        row_weight[rows] = 1.0 / len(rows)
    group_share = torch.tensor([len(range(j, nr, k)) / nr for j in range(k)], device=device) if k else None
    # Each chunk's rows of each group (forget, retain directions), as positions inside the chunk.
    chunk_groups = [[torch.nonzero(group_of[idx] == g).flatten() for g in range(1 + k)] for _, idx in chunks]

    n_params = sum(w.numel() for w in weights.values())
    metric = DiagonalAdamMetric(n_params, cfg.adam_beta2, cfg.adam_eps, device=device)
    logprob = torch.empty(nf + nr, device=device)
    first_rank = torch.empty(nf + nr, dtype=torch.long, device=device)
    ref = torch.empty(nf + nr, device=device)  # the frozen π_ref of NPO: the pre-unlearning model, step 0
    history: list[dict] = []

    def forgotten() -> bool:
        return all(cfg.is_forgotten(float(p), int(r)) for p, r in zip(logprob[:nf].exp(), first_rank[:nf]))

    step = 0
    for step in range(cfg.max_steps + 1):  # noqa: B007 - `step` is the number of updates made
        flat, forget_sum = None, 0.0
        for (batch, idx), groups in zip(chunks, chunk_groups):
            with GroupGradients(modules) as capture:
                scores = answer_scores(model, batch)
                if not bool(torch.isfinite(scores.logprob).all()):
                    raise UnlearnError(
                        f"non-finite log-probabilities at step {step} (lr {cfg.lr} too large?); weights restored"
                    )
                logprob[idx], first_rank[idx] = scores.logprob.detach(), scores.first_rank
                if step == 0:
                    ref[idx] = scores.logprob.detach()
                if step == cfg.max_steps or (len(chunks) == 1 and forgotten()):
                    continue  # the last forward, or done: the check below stops, no backward needed
                is_f = idx < nf
                terms = row_terms(cfg, scores.logprob, ref[idx], batch.lengths, is_f)
                forget_sum += float(terms[is_f].detach().sum())
                part = capture.gradients((terms * row_weight[idx]).sum(), groups)
                flat = part if flat is None else flat + part
        probs, ranks = logprob[:nf].exp(), first_rank[:nf]
        info = {
            "step": step,
            "max_target_prob": float(probs.max()),
            "min_target_rank": int(ranks.min()),
            "retain_mean_abs_change": float((logprob[nf:].exp() - ref[nf:].exp()).abs().mean())
            if nr
            else 0.0,
        }
        if forgotten() or step == cfg.max_steps:
            history.append(info)
            if on_step is not None:
                on_step(step, info)
            break
        info["forget_loss"] = forget_sum / nf
        if flat is None or not bool(torch.isfinite(flat).all()):
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
            assert group_share is not None  # the unlearner refuses retain_weight > 0 without retain pairs
            direction = direction + cfg.retain_weight * (group_share @ g_retain)
    else:
        direction = g_forget
        if cfg.retain_weight > 0:
            assert group_share is not None  # the unlearner refuses retain_weight > 0 without retain pairs
            direction = direction + cfg.retain_weight * (group_share @ g_retain)
        metric.observe(direction.square())
        h = metric.h()
    return -cfg.lr * h * direction
