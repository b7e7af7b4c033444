"""v*/z optimisation: the vector that, written at the subject's last token, makes the target likely.

For a batch of requests, δ_i ∈ R^d is added either to the MLP output of layer l (ROME, "mlp") or to the
residual output of block L (MEMIT/AlphaEdit, "residual") at subject_last, and optimised with Adam on

    L_i(δ) = mean_templates NLL(target)/|y| + λ_KL·KL(P_δ‖P_0) + λ_wd·‖δ‖/‖m₀‖² (+ SADR)

with ‖δ_i‖ clamped to clamp·‖m₀_i‖ and per-request early stop (METHODS §1.2, §2.1). Requests are
independent, so they share one batched forward; a finished request leaves the batch.

Speed (METHODS §0): positions before subject_last never change, so their KV is computed once and
reused; layers below the injection point are never re-run (their output at the suffix is cached);
logits are computed only at target positions and at the KL position.

>>> from kedit.editing.values import optimise_values   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace

import torch

from kedit.editing.config import ValueOptConfig
from kedit.editing.keys import Row, build_rows, kl_rows, pad_id, target_ids
from kedit.editing.requests import EditRequest
from kedit.editing.sadr import AttentionTap, sadr_loss
from kedit.editing.tracing import PrefixBatch, base_model, fresh_cache, full_forward, hooks, layer_window
from kedit.errors import EditError

log = logging.getLogger(__name__)


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


# Requests optimised together in one batched loop. Requests are independent (own δ, own Adam state,
# own stop), so a large batch is split into chunks: the activations kept for backward grow with the
# batch (100 requests x 7 prompts took >10 GB), and small chunks stay in cache.
CHUNK_REQUESTS = 16


def optimise_values(
    bundle,
    requests: list[EditRequest],
    templates: list[str],
    cfg: ValueOptConfig,
    site: str,
    layer: int,
    key_layers: list[int] = (),
    sadr: bool = False,
) -> ValueResult:
    """Optimise δ for every request at `site` ("mlp" or "residual") of `layer`; see module docstring.

    More than `CHUNK_REQUESTS` requests are optimised chunk by chunk (same result: they are independent);
    `loss_trace` is then the first chunk's.
    """
    if len(requests) <= CHUNK_REQUESTS:
        return _optimise(bundle, requests, templates, cfg, site, layer, key_layers, sadr)
    t0 = time.perf_counter()
    parts = [
        _optimise(bundle, requests[i : i + CHUNK_REQUESTS], templates, cfg, site, layer, key_layers, sadr)
        for i in range(0, len(requests), CHUNK_REQUESTS)
    ]
    rows = [replace(r, request=r.request + i * CHUNK_REQUESTS) for i, p in enumerate(parts) for r in p.rows]
    return ValueResult(
        delta=torch.cat([p.delta for p in parts]),
        init=torch.cat([p.init for p in parts]),
        rows=rows,
        row_keys={l: torch.cat([p.row_keys[l] for p in parts]) for l in parts[0].row_keys},
        steps=max(p.steps for p in parts),
        final_loss=[x for p in parts for x in p.final_loss],
        final_nll=[x for p in parts for x in p.final_nll],
        loss_trace=parts[0].loss_trace,
        seconds=time.perf_counter() - t0,
    )


def _optimise(bundle, requests, templates, cfg, site, layer, key_layers, sadr) -> ValueResult:
    t0 = time.perf_counter()
    model, spec, tok = bundle.model, bundle.spec, bundle.tokenizer
    n_layers = spec.n_layers(model)
    if site not in ("mlp", "residual"):
        raise ValueError(f"site must be 'mlp' or 'residual', not {site!r}")
    start = layer if site == "mlp" else layer + 1
    if not 0 <= layer < n_layers - (site == "residual"):
        raise EditError(f"layer {layer} is out of range for a {n_layers}-layer model at site {site}")
    n = len(requests)
    rows = build_rows(tok, requests, templates, target=True)
    anchors = kl_rows(tok, requests)
    all_rows = rows + anchors
    n_rw = len(rows)
    batch = PrefixBatch.build([list(r.ids) for r in all_rows], [r.subject_col for r in all_rows], pad_id(tok))
    P = batch.n_prefix
    row_req = torch.tensor([r.request for r in all_rows])
    is_kl = torch.zeros(len(all_rows), dtype=torch.bool)
    is_kl[n_rw:] = True

    # Target positions in suffix coordinates (rewriting rows only).
    tgts = [target_ids(tok, q.target) for q in requests]
    t_max = max(len(t) for t in tgts)
    tgt_cols = torch.zeros(n_rw, t_max, dtype=torch.long)
    tgt_ids = torch.zeros(n_rw, t_max, dtype=torch.long)
    tgt_mask = torch.zeros(n_rw, t_max)
    for i, r in enumerate(rows):
        y = tgts[r.request]
        for j in range(len(y)):
            tgt_cols[i, j] = r.n_prompt - 1 + j - r.subject_col
            tgt_ids[i, j] = y[j]
            tgt_mask[i, j] = 1.0
    query_cols = tgt_cols[:, 0]  # SADR query: the position predicting the first target token

    # One no-grad forward: prefix KV, the hidden state entering layer `start` at the suffix, keys,
    # and the initial value at subject_last.
    found: dict = {}
    key_layers = sorted(set(key_layers))

    def _grab_key(layer: int):
        return lambda m, a: found.__setitem__(("k", layer), a[0][:, P].clone())

    pre_hooks = [(spec.down_proj_module(model, l), _grab_key(l)) for l in key_layers]
    if start < n_layers:
        pre_hooks.append(
            (spec.layer(model, start), lambda m, a: found.__setitem__("h_in", a[0][:, P:].clone()))
        )
    init_module = spec.down_proj_module(model, layer) if site == "mlp" else spec.layer(model, layer)
    post_hooks = [(init_module, lambda m, a, o: found.__setitem__("init", o[:, P].clone()))]
    with hooks(pre_hooks, pre=True), hooks(post_hooks):
        kv = full_forward(bundle, batch)  # all layers: steps need the prefix KV of every layer >= start
    h_in = found["h_in"]
    bare_rows = torch.tensor([i for i, r in enumerate(rows) if r.template == 0])
    init = found["init"][bare_rows].clone()  # (n, d) request order (bare rows are request-major)
    init_norm = init.norm(dim=1)
    row_keys = {l: found[("k", l)][:n_rw] for l in key_layers}

    d = init.shape[1]
    delta = torch.zeros(n, d, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=cfg.v_lr)
    active = torch.ones(n, dtype=torch.bool)
    final_loss = torch.full((n,), float("nan"))
    final_nll = torch.full((n,), float("nan"))
    kl_init: torch.Tensor | None = None
    a0: dict[int, torch.Tensor] | None = None
    base = base_model(bundle)
    lm_head = spec.lm_head_module(model)
    attn_layers = list(range(layer + 1, n_layers))
    tap = AttentionTap(bundle, attn_layers) if sadr else None
    steps = cfg.sadr_num_grad_steps if sadr else cfg.v_num_grad_steps
    trace: list[float] = []
    it = 0
    for it in range(steps):
        sel = torch.nonzero(active[row_req]).squeeze(1)  # batch rows of active requests
        sub = batch.select(sel)
        sel_req = row_req[sel]
        d_rows = delta[sel_req]
        hidden = h_in[sel]
        hook_pairs = []
        if site == "residual":
            hidden = torch.cat([hidden[:, :1] + d_rows[:, None], hidden[:, 1:]], dim=1)
        else:

            def _inject(m, a, o, d_rows=d_rows):
                return torch.cat([o[:, :1] + d_rows[:, None], o[:, 1:]], dim=1)

            hook_pairs.append((spec.down_proj_module(model, layer), _inject))
        cache = fresh_cache(bundle, kv, sel, start=start) if P > 0 else None
        rw_local = torch.nonzero(~is_kl[sel]).squeeze(1)  # local indices of rewriting rows
        rw_global = sel[rw_local]
        tap_ctx = tap.active(rw_local, query_cols[rw_global]) if tap else contextlib.nullcontext()
        with layer_window(bundle, start, n_layers, hidden_in=hidden), hooks(hook_pairs), tap_ctx:
            out = base(
                input_ids=sub.suffix_ids,
                attention_mask=sub.attention_mask,
                position_ids=sub.suffix_positions,
                cache=cache,
                use_cache=cache is not None,
            )
        hs = out.last_hidden_state
        # NLL on target positions of rewriting rows
        gathered = hs[rw_local[:, None], tgt_cols[rw_global]]  # (R, T, d)
        logp = torch.log_softmax(lm_head(gathered).float(), dim=-1)
        tok_lp = logp.gather(2, tgt_ids[rw_global][..., None]).squeeze(2) * tgt_mask[rw_global]
        nll_row = -tok_lp.sum(1) / tgt_mask[rw_global].sum(1)
        rw_req = row_req[rw_global]
        counts = torch.bincount(rw_req, minlength=n).clamp(min=1).float()
        nll = torch.zeros(n).index_add(0, rw_req, nll_row) / counts
        with torch.no_grad():  # per request: is every target token the argmax on every prompt?
            hit_row = ((logp.argmax(-1) == tgt_ids[rw_global]) | (tgt_mask[rw_global] == 0)).all(1)
            misses = torch.zeros(n).index_add(0, rw_req, (~hit_row).float())
            prob = torch.zeros(n).index_add(0, rw_req, (tok_lp.sum(1) / tgt_mask[rw_global].sum(1)).exp()) / counts
            reached = (misses == 0) & (prob >= cfg.argmax_stop_prob) if cfg.argmax_stop_prob > 0 else None
        # KL of the next-token distribution at the anchor's subject_last
        kl_local = torch.nonzero(is_kl[sel]).squeeze(1)
        kl_lp = torch.log_softmax(lm_head(hs[kl_local, 0]).float(), dim=-1)
        kl_req = row_req[sel[kl_local]]
        if kl_init is None:
            kl_init = torch.zeros(n, kl_lp.shape[1])
            kl_init[kl_req] = kl_lp.detach()
        kl = torch.zeros(n)
        kl = kl.index_add(0, kl_req, (kl_lp.exp() * (kl_lp - kl_init[kl_req])).sum(1))
        wd = cfg.v_weight_decay * delta.norm(dim=1) / init_norm.pow(2)
        loss = nll + cfg.kl_factor * kl + wd
        if tap is not None:
            if a0 is None:
                a0 = {l: a.detach().clone() for l, a in tap.captured.items()}
                a0_rows = rw_global.clone()
            pos = torch.searchsorted(a0_rows, rw_global)
            cur0 = {l: a0[l][pos] for l in tap.captured}
            loss = loss + sadr_loss(tap.captured, cur0, P, rw_req, n, cfg.sadr_weight, cfg.sadr_hinge)
        if not torch.isfinite(loss[active]).all():
            raise EditError("non-finite loss while optimising the edit value; weights left untouched")
        final_loss[active] = loss[active].detach()
        final_nll[active] = nll[active].detach()
        trace.append(float(loss.detach()[active].mean()))
        done = active & (loss.detach() < cfg.loss_stop)
        if reached is not None:
            done |= active & reached
        if it == steps - 1:
            break
        todo = active & ~done
        if not todo.any():
            break
        before = delta.detach().clone()
        opt.zero_grad()
        loss[todo].sum().backward()
        opt.step()
        with torch.no_grad():
            delta[~todo] = before[~todo]  # Adam momentum must not move finished requests
            max_norm = cfg.clamp_norm_factor * init_norm
            scale = (max_norm / delta.norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
            delta.mul_(scale[:, None])
        active = todo
    delta = delta.detach()
    if not torch.isfinite(delta).all():
        raise EditError("non-finite edit value; weights left untouched")
    seconds = time.perf_counter() - t0
    log.debug("values: %d requests, %d steps, %.2fs, loss %s", n, it + 1, seconds, final_loss.tolist())
    return ValueResult(
        delta=delta,
        init=init,
        rows=rows,
        row_keys=row_keys,
        steps=it + 1,
        final_loss=final_loss.tolist(),
        final_nll=final_nll.tolist(),
        loss_trace=trace,
        seconds=seconds,
    )
