"""v*/z optimisation: the vector that, written at the subject's last token, makes the target likely.

For a batch of requests, δ_i ∈ R^d is added either to the MLP output of layer l (ROME, "mlp") or to the
residual output of block L (MEMIT/AlphaEdit, "residual") at subject_last, and optimised with Adam on

    L_i(δ) = mean_templates NLL(target)/|y| + λ_KL·KL(P_δ‖P_0) + λ_wd·‖δ‖/‖m₀‖² (+ SADR)

with ‖δ_i‖ clamped to clamp·‖m₀_i‖ and per-request early stop (METHODS §1.2, §2.1). Requests are
independent (own δ_i, own Adam moments, own stop), so all of them share one batched loop: the total
loss is the sum of the per-request losses and a request that reaches its stop criterion leaves it.

Speed (METHODS §0): positions before subject_last never change, so their KV is computed once (one
no-grad pass: layers below the injection point on every position, the layers above it on the prefix
positions only) and reused; layers below the injection point are never re-run; logits are computed
only at target positions and at the KL position. Rows (templated prompts) are laid out
[left-padded prefix | right-padded suffix] split at subject_last and grouped into buckets of similar
suffix length, so almost no padded position is computed; each bucket's graph is back-propagated as soon
as its loss is known (memory stays one bucket's activations), and buckets are compacted when requests
finish. The KL anchor rows are cut at subject_last (the KL is read there).

>>> from kedit.editing.values import optimise_values   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import torch

from kedit.editing.config import ValueOptConfig
from kedit.editing.keys import Row, build_rows, kl_rows, pad_id, target_ids
from kedit.editing.precision import low_precision_weights, resolve_value_dtype
from kedit.editing.requests import EditRequest
from kedit.editing.sadr import AttentionTap, sadr_loss
from kedit.editing.tracing import PrefixBatch, base_model, fresh_cache, hooks, layer_window
from kedit.errors import EditError, UnsupportedArchitectureError

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
    request_steps: list[int] = field(default_factory=list)  # forward passes each request took part in
    cpu_seconds: float = 0.0  # process CPU time (the wall clock also counts other users' load)
    dtype: str = "float32"  # precision of the products after the first step (precision.py)


# Bucketing: rows are grouped by suffix length; a bucket grows while it has fewer than MIN_BUCKET_TOKENS
# padded suffix positions, or they stay within PAD_SLACK of the real ones and below MAX_BUCKET_TOKENS (the activations kept for backward are
# ~0.9 MB per suffix position for SmolLM2's 22 layers above MEMIT's layer 7).
MAX_BUCKET_TOKENS = 1024
PAD_SLACK = 1.15
MIN_BUCKET_TOKENS = 128
PREPARE_TOKENS = 4096  # padded positions per group of the no-grad pass
# Up to this many rows (one ROME edit: ~7), every bucket's graph is kept until the stop rule has been read,
# so the step that reaches the target skips its backward pass; bigger batches free each graph at once.
DEFER_BACKWARD_ROWS = 64


@dataclass
class _Bucket:
    """Rows of similar suffix length with their cached prefix KV and the hidden state entering `start`."""

    rows: torch.Tensor  # global row indices (into rewriting rows + KL rows)
    batch: PrefixBatch
    kv: list  # prefix KV per layer (layers below `start` alias layer `start`'s tensors)
    h_in: torch.Tensor  # (B, S, d) hidden state entering layer `start` at the suffix positions
    a0: dict[int, torch.Tensor] | None = None  # SADR: initial attention rows of the rewriting rows

    def keep(self, mask: torch.Tensor, is_kl: torch.Tensor) -> None:
        """Drop the rows where `mask` is False (finished requests); KV rows are copied once here."""
        if self.a0 is not None:  # a0 follows the order of the bucket's rewriting rows
            rw_keep = mask[~is_kl[self.rows]]
            self.a0 = {l: a[rw_keep] for l, a in self.a0.items()}
        idx = torch.nonzero(mask).squeeze(1)
        self.rows = self.rows[idx]
        self.batch = self.batch.select(idx)
        self.kv = [(k[idx], v[idx]) for k, v in self.kv]
        self.h_in = self.h_in[idx]


def _buckets_of(lengths: list[int], order: list[int]) -> list[list[int]]:
    """Split `order` (rows sorted by suffix length) into buckets with little padding."""
    out: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for r in order:
        s = lengths[r]
        padded = (len(cur) + 1) * s  # rows are ascending in length: s is the bucket's width
        # A small bucket is kept together even with padding: per-forward overhead (a Python call per
        # layer and op) costs more than a few padded positions (ROME: one request, one bucket).
        if cur and padded > MIN_BUCKET_TOKENS and (padded > PAD_SLACK * (real + s) or padded > MAX_BUCKET_TOKENS):
            out.append(cur)
            cur, real = [], 0
        cur.append(r)
        real += s
    if cur:
        out.append(cur)
    return out


def _prefix_kv(cache, n_layers: int, start: int, width: int) -> list:
    """Prefix KV per layer from a cache filled by layers [start, n_layers); lower layers alias `start`'s."""
    kv: list = []
    for idx in range(n_layers):
        layer = cache.layers[idx] if idx < len(cache.layers) else None
        k = getattr(layer, "keys", None)
        if idx >= start and (k is None or k.numel() == 0):
            raise UnsupportedArchitectureError(f"no KV cache was written for layer {idx}")
        if k is not None and k.numel() and k.shape[-2] != width:
            raise UnsupportedArchitectureError("prompt longer than the attention window of a sliding layer")
        kv.append((k.detach(), layer.values.detach()) if idx >= start else None)
    first = kv[start]
    return [first if x is None else x for x in kv]


@torch.no_grad()
def _prepare(bundle, batch: PrefixBatch, start: int, n_layers: int, key_layers_below: list[int],
             init_layer: int | None) -> tuple[list, torch.Tensor, dict]:
    """The no-grad pass of one group of rows: prefix KV of layers ≥ start, hidden state entering `start`.

    Layers below `start` run on every position; layers from `start` up only on the prefix positions
    (the optimisation steps recompute the suffix there). Returns (KV per layer, (B, S, d) hidden state
    at the suffix, {("k", l): keys of `key_layers_below`, "init": residual output of `init_layer`} at
    subject_last).
    """
    spec, model = bundle.spec, bundle.model
    base = base_model(bundle)
    P = batch.n_prefix
    found: dict = {}
    pre = [
        (spec.down_proj_module(model, l), lambda m, a, l=l: found.__setitem__(("k", l), a[0][:, P].clone()))
        for l in key_layers_below
    ]
    if start > 0:
        post = [(spec.layer(model, start - 1), lambda m, a, o: found.__setitem__("h", o.clone()))]
        stop = start
    else:  # the input of layer 0 (embeddings, family-specific scaling included)
        pre.append((spec.layer(model, 0), lambda m, a: found.__setitem__("h", a[0].clone())))
        post, stop = [], 1
    if init_layer is not None:
        post.append((spec.layer(model, init_layer), lambda m, a, o: found.__setitem__("init", o[:, P].clone())))
    with hooks(pre, pre=True), hooks(post), layer_window(bundle, 0, stop):
        base(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    h = found.pop("h")
    if P == 0:
        return [], h, found
    with layer_window(bundle, start, n_layers, hidden_in=h[:, :P]):
        out = base(
            input_ids=batch.input_ids[:, :P],
            attention_mask=batch.attention_mask[:, :P],
            position_ids=batch.position_ids[:, :P],
            use_cache=True,
        )
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    return _prefix_kv(cache, n_layers, start, P), h[:, P:], found


def _groups(keys: list[tuple[int, int]], max_tokens: int) -> list[list[int]]:
    """Rows sorted by `keys` = (prefix, suffix) lengths, cut into groups of at most `max_tokens` padded tokens."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    out: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in order:
        w = max(width, keys[i][0] + keys[i][1])
        if cur and (len(cur) + 1) * w > max_tokens:
            out.append(cur)
            cur, w = [], keys[i][0] + keys[i][1]
        cur.append(i)
        width = w
    if cur:
        out.append(cur)
    return out


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
    """Optimise δ for every request at `site` ("mlp" or "residual") of `layer`; see module docstring."""
    t0, c0 = time.perf_counter(), time.process_time()
    model, spec, tok = bundle.model, bundle.spec, bundle.tokenizer
    n_layers = spec.n_layers(model)
    if site not in ("mlp", "residual"):
        raise ValueError(f"site must be 'mlp' or 'residual', not {site!r}")
    start = layer if site == "mlp" else layer + 1
    if not 0 <= layer < n_layers - (site == "residual"):
        raise EditError(f"layer {layer} is out of range for a {n_layers}-layer model at site {site}")
    n = len(requests)
    rows = build_rows(tok, requests, templates, target=True)
    # The KL is read at the anchor's subject_last: later tokens cannot influence it, so cut them.
    anchors = [Row(r.request, r.template, r.ids[: r.subject_col + 1], r.subject_col, r.subject_col + 1)
               for r in kl_rows(tok, requests)]
    all_rows = rows + anchors
    n_rw = len(rows)
    n_all = len(all_rows)
    row_req = torch.tensor([r.request for r in all_rows])
    is_kl = torch.zeros(n_all, dtype=torch.bool)
    is_kl[n_rw:] = True
    rw_count = torch.bincount(row_req[:n_rw], minlength=n).clamp(min=1).float()

    # Target positions in suffix coordinates (rewriting rows; zeros with mask 0 for KL rows).
    tgts = [target_ids(tok, q.target) for q in requests]
    t_max = max(len(t) for t in tgts)
    tgt_cols = torch.zeros(n_all, t_max, dtype=torch.long)
    tgt_ids = torch.zeros(n_all, t_max, dtype=torch.long)
    tgt_mask = torch.zeros(n_all, t_max)
    for i, r in enumerate(rows):
        y = tgts[r.request]
        for j in range(len(y)):
            tgt_cols[i, j] = r.n_prompt - 1 + j - r.subject_col
            tgt_ids[i, j] = y[j]
            tgt_mask[i, j] = 1.0
    query_cols = tgt_cols[:, 0]  # SADR query: the position predicting the first target token

    # Buckets of similar suffix length; within a length, similar prefix length.
    suffix_len = [len(r.ids) - r.subject_col for r in all_rows]
    order = sorted(range(n_all), key=lambda i: (suffix_len[i], all_rows[i].subject_col))
    key_layers = sorted(set(key_layers))
    keys_below = [l for l in key_layers if l < start]
    keys_above = [l for l in key_layers if l >= start]
    # The no-grad pass runs on groups sorted by prefix length (little left padding), its results are
    # stored right-aligned per row, and each bucket takes the last P_b prefix positions of its rows.
    pad = pad_id(tok)
    prefix_len = [r.subject_col for r in all_rows]
    p_max, s_max = max(prefix_len), max(suffix_len)
    d = spec.d_model(model)
    kv_all: list | None = None
    h_all = torch.zeros(n_all, s_max, d, dtype=bundle.dtype)  # the model's dtype: bf16 models stay bf16
    grab: dict = {}
    for members in _groups([(prefix_len[i], suffix_len[i]) for i in range(n_all)], PREPARE_TOKENS):
        idx = torch.tensor(members)
        batch = PrefixBatch.build([list(all_rows[i].ids) for i in members], [prefix_len[i] for i in members], pad)
        kv, h_suf, found = _prepare(bundle, batch, start, n_layers, keys_below, layer if site == "residual" else None)
        h_all[idx, : h_suf.shape[1]] = h_suf
        for key, value in found.items():
            grab.setdefault(key, torch.zeros(n_all, value.shape[1], dtype=value.dtype))[idx] = value
        if kv and p_max > 0:
            if kv_all is None:
                kv_all = [(torch.zeros(n_all, *k.shape[1:2], p_max, k.shape[3], dtype=k.dtype),
                           torch.zeros(n_all, *v.shape[1:2], p_max, v.shape[3], dtype=v.dtype)) if i >= start else None
                          for i, (k, v) in enumerate(kv)]
            width = batch.n_prefix
            for i in range(start, n_layers):
                kv_all[i][0][idx, :, p_max - width :] = kv[i][0]
                kv_all[i][1][idx, :, p_max - width :] = kv[i][1]
    buckets: list[_Bucket] = []
    for members in _buckets_of(suffix_len, order):
        idx = torch.tensor(members)
        batch = PrefixBatch.build([list(all_rows[i].ids) for i in members], [prefix_len[i] for i in members], pad)
        P, S = batch.n_prefix, batch.input_ids.shape[1] - batch.n_prefix
        kv_b: list = []
        if P > 0:
            upper = [(kv_all[i][0][idx, :, p_max - P :], kv_all[i][1][idx, :, p_max - P :]) for i in range(start, n_layers)]
            kv_b = [upper[0]] * start + upper
        buckets.append(_Bucket(idx, batch, kv_b, h_all[idx, :S]))
    del kv_all, h_all
    bare = torch.tensor([i for i, r in enumerate(rows) if r.template == 0])  # request order
    bucket_order = torch.cat([b.rows for b in buckets])  # global row of each bucket-ordered row
    inv_order = torch.empty_like(bucket_order)
    inv_order[bucket_order] = torch.arange(n_all)

    def _global(parts: list[torch.Tensor]) -> torch.Tensor:  # bucket order -> global row order
        return torch.cat(parts)[inv_order]

    row_keys = {l: grab[("k", l)][:n_rw] for l in keys_below}
    init = grab["init"][bare].float() if site == "residual" else None  # δ, m₀/h₀ in float32 whatever the model
    step0_keys: dict[int, list[torch.Tensor]] = {l: [] for l in keys_above}
    step0_init: list[torch.Tensor] = []

    delta = torch.zeros(n, d, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=cfg.v_lr)
    active = torch.ones(n, dtype=torch.bool)
    final_loss = torch.full((n,), float("nan"))
    final_nll = torch.full((n,), float("nan"))
    req_steps = torch.zeros(n, dtype=torch.long)
    kl_init = torch.zeros(n, 0)
    base = base_model(bundle)
    lm_head = spec.lm_head_module(model)
    tap = AttentionTap(bundle, list(range(layer + 1, n_layers))) if sadr else None
    steps = cfg.sadr_num_grad_steps if sadr else cfg.v_num_grad_steps
    trace: list[float] = []
    defer = n_all <= DEFER_BACKWARD_ROWS
    it = 0
    # steps after the first (which records the fp32 references) run their products in `low` (precision.py)
    low = resolve_value_dtype(cfg.value_dtype, delta.device)
    window = [spec.layer(model, i) for i in range(start, n_layers)]
    head_low: torch.Tensor | None = None

    def logits(x: torch.Tensor) -> torch.Tensor:
        if head_low is None:
            return lm_head(x).float()
        return torch.nn.functional.linear(x.to(low), head_low, lm_head.bias).float()

    with contextlib.ExitStack() as precision:
        for it in range(steps):
            last = it == steps - 1
            if it == 1 and low != torch.float32:
                precision.enter_context(low_precision_weights(window, low))
                head_low = lm_head.weight.detach().to(low)
            opt.zero_grad(set_to_none=True)
            pending: list[torch.Tensor] = []  # deferred per-bucket losses
            nll_acc = torch.zeros(n)
            rest_acc = torch.zeros(n)  # KL + SADR
            misses = torch.zeros(n)
            prob_acc = torch.zeros(n)
            for bk in buckets:
                if bk.rows.numel() == 0:
                    continue
                g = bk.rows
                b_req = row_req[g]
                d_rows = delta[b_req]
                hidden = bk.h_in
                hook_pairs = []
                pre_pairs = []
                if it == 0:
                    for l in keys_above:
                        pre_pairs.append((spec.down_proj_module(model, l),
                                          lambda m, a, l=l: step0_keys[l].append(a[0][:, 0].detach().clone())))
                if site == "residual":
                    hidden = torch.cat([(hidden[:, :1] + d_rows[:, None]).to(hidden.dtype), hidden[:, 1:]], dim=1)
                else:

                    def _inject(m, a, o, d_rows=d_rows, first=it == 0):
                        if first:
                            step0_init.append(o[:, 0].detach().clone())
                        return torch.cat([(o[:, :1] + d_rows[:, None]).to(o.dtype), o[:, 1:]], dim=1)

                    hook_pairs.append((spec.down_proj_module(model, layer), _inject))
                P = bk.batch.n_prefix
                cache = fresh_cache(bundle, bk.kv, None, start=start) if P > 0 else None
                rw_local = torch.nonzero(~is_kl[g]).squeeze(1)
                rw_global = g[rw_local]
                tap_ctx = tap.active(rw_local, query_cols[rw_global]) if tap else contextlib.nullcontext()
                with layer_window(bundle, start, n_layers, hidden_in=hidden), hooks(pre_pairs, pre=True), \
                        hooks(hook_pairs), tap_ctx:
                    out = base(
                        input_ids=bk.batch.suffix_ids,
                        attention_mask=bk.batch.attention_mask,
                        position_ids=bk.batch.suffix_positions,
                        cache=cache,
                        use_cache=cache is not None,
                    )
                hs = out.last_hidden_state
                part = torch.zeros(n)
                kl_local = torch.nonzero(is_kl[g]).squeeze(1)
                # logits only at the real target positions (targets have different lengths) and at the KL
                # positions, in one product: the step is bound by reading the head's weight
                head_in = []
                if rw_local.numel():
                    m = tgt_mask[rw_global]
                    pos_row, pos_t = torch.nonzero(m, as_tuple=True)
                    head_in.append(hs[rw_local[pos_row], tgt_cols[rw_global[pos_row], pos_t]])  # (V, d)
                n_tgt = len(head_in[0]) if head_in else 0
                if kl_local.numel():
                    head_in.append(hs[kl_local, 0])
                lp_all = torch.log_softmax(logits(torch.cat(head_in)), dim=-1) if head_in else None
                if rw_local.numel():
                    logp = lp_all[:n_tgt]
                    want = tgt_ids[rw_global[pos_row], pos_t]
                    tok_lp = logp.gather(1, want[:, None]).squeeze(1)
                    row_lp = torch.zeros(len(rw_local)).index_add(0, pos_row, tok_lp)
                    nll_row = -row_lp / m.sum(1)
                    rw_req = row_req[rw_global]
                    nll_part = torch.zeros(n).index_add(0, rw_req, nll_row / rw_count[rw_req])
                    part = part + nll_part
                    with torch.no_grad():  # per request: is every target token the argmax on every prompt?
                        nll_acc += nll_part.detach()
                        miss_tok = (logp.argmax(-1) != want).float()
                        misses.index_add_(0, rw_req[pos_row], miss_tok)
                        prob_acc.index_add_(0, rw_req, (-nll_row.detach()).exp() / rw_count[rw_req])
                    if tap is not None:
                        if bk.a0 is None:  # step 0: δ = 0, every row of the bucket present
                            bk.a0 = {l: a.detach().clone() for l, a in tap.captured.items()}
                        cur0 = bk.a0
                        local_n = torch.bincount(rw_req, minlength=n).float()
                        s = sadr_loss(tap.captured, cur0, P, rw_req, n, cfg.sadr_weight, cfg.sadr_hinge)
                        s = s * local_n / rw_count  # sadr_loss averages over this bucket's rows only
                        part = part + s
                        rest_acc += s.detach()
                if kl_local.numel():
                    kl_lp = lp_all[n_tgt:]
                    kl_req = row_req[g[kl_local]]
                    if it == 0:
                        if kl_init.shape[1] == 0:
                            kl_init = torch.zeros(n, kl_lp.shape[1])
                        kl_init[kl_req] = kl_lp.detach()
                    kl = torch.zeros(n).index_add(0, kl_req, (kl_lp.exp() * (kl_lp - kl_init[kl_req])).sum(1))
                    part = part + cfg.kl_factor * kl
                    rest_acc += cfg.kl_factor * kl.detach()
                if defer:
                    pending.append(part.sum())
                elif not last:
                    part.sum().backward()
                del out, hs, part
            if it == 0:  # values read during the first (δ = 0) pass
                if site == "mlp":
                    init = _global(step0_init)[bare].float()
                for l in keys_above:
                    row_keys[l] = _global(step0_keys[l])[:n_rw]
                init_norm = init.norm(dim=1)
            wd = cfg.v_weight_decay * delta.norm(dim=1) / init_norm.pow(2)
            if not last and not defer:
                wd[active].sum().backward()
            loss = nll_acc + rest_acc + wd.detach()
            reached = (misses == 0) & (prob_acc >= cfg.argmax_stop_prob) if cfg.argmax_stop_prob > 0 else None
            if not torch.isfinite(loss[active]).all():
                raise EditError("non-finite loss while optimising the edit value; weights left untouched")
            final_loss[active] = loss[active]
            req_steps[active] += 1
            final_nll[active] = nll_acc[active]
            trace.append(float(loss[active].mean()))
            done = active & (loss < cfg.loss_stop)
            if reached is not None:
                done |= active & reached
            if last:
                break
            todo = active & ~done
            if not todo.any():
                break
            if defer:
                (torch.stack(pending).sum() + wd[active].sum()).backward()
                pending.clear()
            before = delta.detach().clone()
            opt.step()
            with torch.no_grad():
                delta[~todo] = before[~todo]  # Adam momentum must not move finished requests
                max_norm = cfg.clamp_norm_factor * init_norm
                scale = (max_norm / delta.norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
                delta.mul_(scale[:, None])
            if done.any():  # finished requests leave the batch for good
                for bk in buckets:
                    keep = todo[row_req[bk.rows]]
                    if not keep.all():
                        bk.keep(keep, is_kl)
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
        request_steps=req_steps.tolist(),
        cpu_seconds=time.process_time() - c0,
        dtype=str(low).removeprefix("torch."),
    )
