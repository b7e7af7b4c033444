"""The value loop as it was before the batched/bucketed rewrite (commit 37981d0), kept verbatim for the
same-run speed comparison of `benchmarks/studies/edit_batch_speed.py` ("old path"). Not used by kedit.

Requests were optimised in chunks of 16; every step ran all rows of the chunk padded to the longest
suffix, with the KL anchors uncut; the initial pass ran every layer on every position.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import torch

from kedit.editing.keys import build_rows, kl_rows, pad_id, target_ids
from kedit.editing.sadr import AttentionTap, sadr_loss
from kedit.editing.tracing import PrefixBatch, base_model, fresh_cache, full_forward, hooks, layer_window
from kedit.editing.values import ValueResult
from kedit.errors import EditError

CHUNK_REQUESTS = 16


def legacy_optimise_values(
    bundle, requests, templates, cfg, site, layer, key_layers=(), sadr=False
) -> ValueResult:
    """Chunks of CHUNK_REQUESTS requests, concatenated as the old `optimise_values` did."""
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
            prob = (
                torch.zeros(n).index_add(0, rw_req, (tok_lp.sum(1) / tgt_mask[rw_global].sum(1)).exp())
                / counts
            )
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
