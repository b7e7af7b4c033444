"""v*/z optimisation: the vector that, written at the subject's last token, makes the target likely.

For a batch of requests, δ_i ∈ R^d is added either to the MLP output of layer l (ROME, "mlp") or to the
residual output of block L (MEMIT/AlphaEdit, "residual") at subject_last, and optimised with Adam on

    L_i(δ) = mean_templates NLL(target)/|y| + λ_KL·KL(P_δ‖P_0) + λ_wd·‖δ‖/‖m₀‖² (+ SADR)

with ‖δ_i‖ clamped to clamp·‖m₀_i‖ and per-request early stop (docs/methods.md §1.2, §2.1). Requests are
independent (own δ_i, own Adam moments, own stop), so all of them share one batched loop: the total
loss is the sum of the per-request losses and a request that reaches its stop criterion leaves it.

The steps, in the manner of ROME's `compute_v`: the rewriting and KL prompts (value_prompts.py); one
no-grad pass that caches every row's prefix and groups the rows into buckets (value_buckets.py,
docs/methods.md §0.4); then the optimisation (`_ValueOptimisation`): per step and bucket a forward with
δ written in (`_forward`), the log-probabilities at the target and KL positions only and the loss terms
(`_bucket_loss`: `_rewrite_loss`, `_sadr_loss`, `_kl_loss`); then weight decay, the stop rule, Adam and
the norm clamp (`_step`); last the result (`ValueResult`). Each bucket's graph is back-propagated as
soon as its loss is known (memory stays one bucket's activations), and buckets are compacted when
requests finish.

>>> from kedit.editing.values import optimise_values   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from kedit.editing.config import ValueOptConfig
from kedit.editing.keys import Row, pad_id
from kedit.editing.precision import low_precision_weights, resolve_value_dtype
from kedit.editing.requests import EditRequest
from kedit.editing.sadr import AttentionTap, sadr_loss
from kedit.editing.tracing import base_model, fresh_cache, hooks, layer_window
from kedit.editing.value_buckets import Bucket, StepTotals, cached_buckets
from kedit.editing.value_prompts import ValuePrompts, value_prompts
from kedit.errors import EditError

log = logging.getLogger(__name__)

# Up to this many rows (one ROME edit: ~7), every bucket's graph is kept until the stop rule has been read,
# so the step that reaches the target skips its backward pass; bigger batches free each graph at once.
DEFER_BACKWARD_ROWS = 64


@dataclass
class ValueResult:
    delta: torch.Tensor  # (n, d) optimised δ
    init: torch.Tensor  # (n, d) value at subject_last of the bare prompt with δ=0 (m₀ or h₀)
    rows: list[Row]  # rewriting rows (request-major)
    row_keys: dict[int, torch.Tensor]  # {layer: (n_rows, d_ff)} keys at subject_last
    steps: int = 0
    final_loss: list[float] = field(default_factory=list)
    final_nll: list[float] = field(default_factory=list)
    loss_trace: list[float] = field(default_factory=list)
    seconds: float = 0.0
    request_steps: list[int] = field(default_factory=list)  # forward passes each request took part in
    cpu_seconds: float = 0.0  # process CPU time (the wall clock also counts other users' load)
    dtype: str = "float32"  # precision of the products after the first step (precision.py)


class _ValueOptimisation:
    """One batched optimisation of δ (one row per request): its state and its steps."""

    def __init__(
        self,
        bundle,
        prompts: ValuePrompts,
        buckets: list[Bucket],
        cfg: ValueOptConfig,
        site: str,
        layer: int,
        start: int,
        row_keys: dict[int, torch.Tensor],
        keys_above: list[int],
        init: torch.Tensor | None,
        sadr: bool,
    ):
        self.bundle, self.prompts, self.buckets, self.cfg = bundle, prompts, buckets, cfg
        self.site, self.layer, self.start, self.keys_above = site, layer, start, keys_above
        spec, model = bundle.spec, bundle.model
        self.n_layers = n_layers = spec.n_layers(model)
        self.n = n = prompts.n_requests
        bucket_order = torch.cat([b.rows for b in buckets])  # global row of each bucket-ordered row
        self.inv_order = torch.empty_like(bucket_order)
        self.inv_order[bucket_order] = torch.arange(prompts.n_all)
        self.row_keys = row_keys  # keys at subject_last; those of `keys_above` are read during step 0
        self.init = init  # δ, m₀/h₀ in float32 whatever the model; for "mlp" read during step 0
        self.init_norm: torch.Tensor | None = None
        self.step0_keys: dict[int, list[torch.Tensor]] = {l: [] for l in keys_above}
        self.step0_init: list[torch.Tensor] = []

        self.delta = torch.zeros(n, spec.d_model(model), requires_grad=True)
        self.opt = torch.optim.Adam([self.delta], lr=cfg.v_lr)
        self.active = torch.ones(n, dtype=torch.bool)
        self.final_loss = torch.full((n,), float("nan"))
        self.final_nll = torch.full((n,), float("nan"))
        self.req_steps = torch.zeros(n, dtype=torch.long)
        self.kl_init = torch.zeros(n, 0)
        self.base = base_model(bundle)
        self.lm_head = spec.lm_head_module(model)
        self.tap = AttentionTap(bundle, list(range(layer + 1, n_layers))) if sadr else None
        self.steps = cfg.sadr_num_grad_steps if sadr else cfg.v_num_grad_steps
        self.trace: list[float] = []
        self.defer = prompts.n_all <= DEFER_BACKWARD_ROWS
        # steps after the first (which records the fp32 references) run their products in `low` (precision.py)
        self.low = resolve_value_dtype(cfg.value_dtype, self.delta.device)
        self.window = [spec.layer(model, i) for i in range(start, n_layers)]
        self.head_low: torch.Tensor | None = None

    def run(self) -> int:
        """Step until every request stops or the step budget is spent; returns the index of the last step."""
        it = 0
        with contextlib.ExitStack() as precision:
            for it in range(self.steps):
                if it == 1 and self.low != torch.float32:
                    precision.enter_context(low_precision_weights(self.window, self.low))
                    self.head_low = self.lm_head.weight.detach().to(self.low)
                if self._step(it, last=it == self.steps - 1):
                    break
        return it

    # -- one step ----------------------------------------------------------------------------------

    def _step(self, it: int, last: bool) -> bool:
        """Loss, stop rule and (unless stopping) one Adam step with the norm clamp; True = stop."""
        cfg, delta, active = self.cfg, self.delta, self.active
        self.opt.zero_grad(set_to_none=True)
        pending: list[torch.Tensor] = []  # deferred per-bucket losses
        totals = StepTotals.zeros(self.n)
        for bk in self.buckets:
            if bk.rows.numel() == 0:
                continue
            part = self._bucket_loss(bk, it, totals)
            if self.defer:
                pending.append(part.sum())
            elif not last:
                part.sum().backward()
            del part
        if it == 0:
            self._read_step0()
        assert self.init_norm is not None  # read during step 0 (_read_step0)
        wd = cfg.v_weight_decay * delta.norm(dim=1) / self.init_norm.pow(2)
        if not last and not self.defer:
            wd[active].sum().backward()
        loss = totals.nll + totals.rest + wd.detach()
        reached = (
            (totals.misses == 0) & (totals.prob >= cfg.argmax_stop_prob) if cfg.argmax_stop_prob > 0 else None
        )
        if not torch.isfinite(loss[active]).all():
            raise EditError("non-finite loss while optimising the edit value; weights left untouched")
        self.final_loss[active] = loss[active]
        self.req_steps[active] += 1
        self.final_nll[active] = totals.nll[active]
        self.trace.append(float(loss[active].mean()))
        done = active & (loss < cfg.loss_stop)
        if reached is not None:
            done |= active & reached
        if last:
            return True
        todo = active & ~done
        if not todo.any():
            return True
        if self.defer:
            (torch.stack(pending).sum() + wd[active].sum()).backward()
            pending.clear()
        before = delta.detach().clone()
        self.opt.step()
        with torch.no_grad():
            delta[~todo] = before[~todo]  # Adam momentum must not move finished requests
            max_norm = cfg.clamp_norm_factor * self.init_norm
            scale = (max_norm / delta.norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
            delta.mul_(scale[:, None])
        if done.any():  # finished requests leave the batch for good
            for bk in self.buckets:
                keep = todo[self.prompts.row_req[bk.rows]]
                if not keep.all():
                    bk.keep(keep, self.prompts.is_kl)
        self.active = todo
        return False

    def _read_step0(self) -> None:
        """The values read during the first (δ = 0) pass: m₀ ("mlp") and the keys at or above `start`."""
        p = self.prompts
        if self.site == "mlp":
            self.init = self._global(self.step0_init)[p.bare].float()
        for l in self.keys_above:
            self.row_keys[l] = self._global(self.step0_keys[l])[: p.n_rw]
        assert self.init is not None  # given for "residual", read just above for "mlp"
        self.init_norm = self.init.norm(dim=1)

    def _global(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Rows gathered bucket by bucket, back in global row order."""
        return torch.cat(parts)[self.inv_order]

    # -- one bucket --------------------------------------------------------------------------------

    def _bucket_loss(self, bk: Bucket, it: int, totals: StepTotals) -> torch.Tensor:
        """(n,) loss of this bucket's rows per request (rewrite NLL, SADR, KL); adds to `totals`."""
        p = self.prompts
        g = bk.rows
        rw_local = torch.nonzero(~p.is_kl[g]).squeeze(1)
        rw_global = g[rw_local]
        kl_local = torch.nonzero(p.is_kl[g]).squeeze(1)
        hs = self._forward(bk, it, rw_local, rw_global)
        part = torch.zeros(self.n)
        # logits only at the real target positions (targets have different lengths) and at the KL
        # positions, in one product: the step is bound by reading the head's weight
        head_in = []
        if rw_local.numel():
            m = p.tgt_mask[rw_global]
            pos_row, pos_t = torch.nonzero(m, as_tuple=True)
            head_in.append(hs[rw_local[pos_row], p.tgt_cols[rw_global[pos_row], pos_t]])  # (V, d)
        n_tgt = len(head_in[0]) if head_in else 0
        if kl_local.numel():
            head_in.append(hs[kl_local, 0])
        lp_all = torch.log_softmax(self._logits(torch.cat(head_in)), dim=-1) if head_in else None
        if rw_local.numel():
            assert lp_all is not None  # head_in holds the rewriting rows' positions
            rw_req = p.row_req[rw_global]
            part = part + self._rewrite_loss(lp_all[:n_tgt], m, pos_row, pos_t, rw_global, rw_req, totals)
            if self.tap is not None:
                part = part + self._sadr_loss(bk, rw_req, totals)
        if kl_local.numel():
            assert lp_all is not None  # head_in holds the KL rows' positions
            part = part + self._kl_loss(lp_all[n_tgt:], p.row_req[g[kl_local]], it, totals)
        return part

    def _forward(self, bk: Bucket, it: int, rw_local: torch.Tensor, rw_global: torch.Tensor) -> torch.Tensor:
        """The layers from `start` up on the bucket's suffix positions, δ written at subject_last."""
        spec, model = self.bundle.spec, self.bundle.model
        d_rows = self.delta[self.prompts.row_req[bk.rows]]
        hidden = bk.h_in
        hook_pairs = []
        pre_pairs = []
        if it == 0:
            for l in self.keys_above:
                pre_pairs.append(
                    (
                        spec.down_proj_module(model, l),
                        lambda m, a, l=l: self.step0_keys[l].append(a[0][:, 0].detach().clone()),
                    )
                )
        if self.site == "residual":
            hidden = torch.cat([(hidden[:, :1] + d_rows[:, None]).to(hidden.dtype), hidden[:, 1:]], dim=1)
        else:

            def _inject(m, a, o, d_rows=d_rows, first=it == 0):
                if first:
                    self.step0_init.append(o[:, 0].detach().clone())
                return torch.cat([(o[:, :1] + d_rows[:, None]).to(o.dtype), o[:, 1:]], dim=1)

            hook_pairs.append((spec.down_proj_module(model, self.layer), _inject))
        cache = fresh_cache(self.bundle, bk.kv, None, start=self.start) if bk.batch.n_prefix > 0 else None
        tap = self.tap
        tap_ctx = (
            tap.active(rw_local, self.prompts.query_cols[rw_global]) if tap else contextlib.nullcontext()
        )
        with (
            layer_window(self.bundle, self.start, self.n_layers, hidden_in=hidden),
            hooks(pre_pairs, pre=True),
            hooks(hook_pairs),
            tap_ctx,
        ):
            out = self.base(
                input_ids=bk.batch.suffix_ids,
                attention_mask=bk.batch.attention_mask,
                position_ids=bk.batch.suffix_positions,
                cache=cache,
                use_cache=cache is not None,
            )
        return out.last_hidden_state

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_low is None:
            return self.lm_head(x).float()
        return torch.nn.functional.linear(x.to(self.low), self.head_low, self.lm_head.bias).float()

    def _rewrite_loss(
        self,
        logp: torch.Tensor,
        m: torch.Tensor,
        pos_row: torch.Tensor,
        pos_t: torch.Tensor,
        rw_global: torch.Tensor,
        rw_req: torch.Tensor,
        totals: StepTotals,
    ) -> torch.Tensor:
        """(n,) mean over each request's rewriting rows of the target NLL per target token."""
        p = self.prompts
        want = p.tgt_ids[rw_global[pos_row], pos_t]
        tok_lp = logp.gather(1, want[:, None]).squeeze(1)
        row_lp = torch.zeros(len(rw_global)).index_add(0, pos_row, tok_lp)
        nll_row = -row_lp / m.sum(1)
        nll_part = torch.zeros(self.n).index_add(0, rw_req, nll_row / p.rw_count[rw_req])
        with torch.no_grad():  # per request: is every target token the argmax on every prompt?
            totals.nll += nll_part.detach()
            miss_tok = (logp.argmax(-1) != want).float()
            totals.misses.index_add_(0, rw_req[pos_row], miss_tok)
            totals.prob.index_add_(0, rw_req, (-nll_row.detach()).exp() / p.rw_count[rw_req])
        return nll_part

    def _sadr_loss(self, bk: Bucket, rw_req: torch.Tensor, totals: StepTotals) -> torch.Tensor:
        """(n,) SADR term of this bucket's rewriting rows (docs/methods.md §4)."""
        tap, cfg = self.tap, self.cfg
        assert tap is not None  # SADR runs only with its attention tap
        if bk.a0 is None:  # step 0: δ = 0, every row of the bucket present
            bk.a0 = {l: a.detach().clone() for l, a in tap.captured.items()}
        local_n = torch.bincount(rw_req, minlength=self.n).float()
        s = sadr_loss(tap.captured, bk.a0, bk.batch.n_prefix, rw_req, self.n, cfg.sadr_weight, cfg.sadr_hinge)
        s = s * local_n / self.prompts.rw_count  # sadr_loss averages over this bucket's rows only
        totals.rest += s.detach()
        return s

    def _kl_loss(
        self, kl_lp: torch.Tensor, kl_req: torch.Tensor, it: int, totals: StepTotals
    ) -> torch.Tensor:
        """(n,) λ_KL·KL(P_δ‖P_0) of the next-token distribution at each request's KL anchor."""
        if it == 0:
            if self.kl_init.shape[1] == 0:
                self.kl_init = torch.zeros(self.n, kl_lp.shape[1])
            self.kl_init[kl_req] = kl_lp.detach()
        kl = torch.zeros(self.n).index_add(0, kl_req, (kl_lp.exp() * (kl_lp - self.kl_init[kl_req])).sum(1))
        totals.rest += self.cfg.kl_factor * kl.detach()
        return self.cfg.kl_factor * kl


def optimise_values(
    bundle,
    requests: list[EditRequest],
    templates: list[str],
    cfg: ValueOptConfig,
    site: str,
    layer: int,
    key_layers: Sequence[int] = (),
    sadr: bool = False,
) -> ValueResult:
    """Optimise δ for every request at `site` ("mlp" or "residual") of `layer`; see module docstring."""
    t0, c0 = time.perf_counter(), time.process_time()
    n_layers = bundle.spec.n_layers(bundle.model)
    if site not in ("mlp", "residual"):
        raise ValueError(f"site must be 'mlp' or 'residual', not {site!r}")
    start = layer if site == "mlp" else layer + 1
    if not 0 <= layer < n_layers - (site == "residual"):
        raise EditError(f"layer {layer} is out of range for a {n_layers}-layer model at site {site}")
    prompts = value_prompts(bundle.tokenizer, requests, templates)
    key_layers = sorted(set(key_layers))
    keys_below = [l for l in key_layers if l < start]
    keys_above = [l for l in key_layers if l >= start]
    buckets, grab = cached_buckets(
        bundle, prompts, pad_id(bundle.tokenizer), start, keys_below, layer if site == "residual" else None
    )
    init = grab["init"][prompts.bare].float() if site == "residual" else None
    row_keys = {l: grab[("k", l)][: prompts.n_rw] for l in keys_below}
    opt = _ValueOptimisation(
        bundle, prompts, buckets, cfg, site, layer, start, row_keys, keys_above, init, sadr
    )
    it = opt.run()
    assert opt.init is not None  # step 0 read it (or it was given): run() always takes step 0
    delta = opt.delta.detach()
    if not torch.isfinite(delta).all():
        raise EditError("non-finite edit value; weights left untouched")
    seconds = time.perf_counter() - t0
    log.debug(
        "values: %d requests, %d steps, %.2fs, loss %s",
        prompts.n_requests,
        it + 1,
        seconds,
        opt.final_loss.tolist(),
    )
    return ValueResult(
        delta=delta,
        init=opt.init,
        rows=prompts.rows,
        row_keys=opt.row_keys,
        steps=it + 1,
        final_loss=opt.final_loss.tolist(),
        final_nll=opt.final_nll.tolist(),
        loss_trace=opt.trace,
        seconds=seconds,
        request_steps=opt.req_steps.tolist(),
        cpu_seconds=time.process_time() - c0,
        dtype=str(opt.low).removeprefix("torch."),
    )
