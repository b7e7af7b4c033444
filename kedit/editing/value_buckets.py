"""The rows of the value optimisation grouped into buckets, each with its prefix computed once.

Positions before subject_last never change, so their KV is computed once (one no-grad pass: layers
below the injection point on every position, the layers above it on the prefix positions only) and
reused at every step; layers below the injection point are never re-run. Rows (templated prompts) are
laid out [left-padded prefix | right-padded suffix] split at subject_last and grouped into buckets of
similar suffix length, so almost no padded position is computed (docs/methods.md §0.4). `StepTotals`
sums a step's per-request losses over the buckets.

>>> buckets_of([3, 3, 4, 9], [0, 1, 2, 3])        # a small bucket stays together
[[0, 1, 2, 3]]
>>> [len(b) for b in buckets_of([10] * 20 + [60], list(range(21)))]   # 21 x 60 would be mostly padding
[20, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kedit.editing.tracing import PrefixBatch, base_model, hooks, layer_window
from kedit.editing.value_prompts import ValuePrompts
from kedit.errors import UnsupportedArchitectureError

# Bucketing: rows are grouped by suffix length; a bucket grows while it has fewer than MIN_BUCKET_TOKENS
# padded suffix positions, or they stay within PAD_SLACK of the real ones and below MAX_BUCKET_TOKENS (the activations kept for backward are
# ~0.9 MB per suffix position for SmolLM2's 22 layers above MEMIT's layer 7).
MAX_BUCKET_TOKENS = 1024
PAD_SLACK = 1.15
MIN_BUCKET_TOKENS = 128
PREPARE_TOKENS = 4096  # padded positions per group of the no-grad pass


@dataclass
class Bucket:
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


def buckets_of(lengths: list[int], order: list[int]) -> list[list[int]]:
    """Split `order` (rows sorted by suffix length) into buckets with little padding."""
    out: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for r in order:
        s = lengths[r]
        padded = (len(cur) + 1) * s  # rows are ascending in length: s is the bucket's width
        # A small bucket is kept together even with padding: per-forward overhead (a Python call per
        # layer and op) costs more than a few padded positions (ROME: one request, one bucket).
        if (
            cur
            and padded > MIN_BUCKET_TOKENS
            and (padded > PAD_SLACK * (real + s) or padded > MAX_BUCKET_TOKENS)
        ):
            out.append(cur)
            cur, real = [], 0
        cur.append(r)
        real += s
    if cur:
        out.append(cur)
    return out


def prefix_kv(cache, n_layers: int, start: int, width: int) -> list:
    """Prefix KV per layer from a cache filled by layers [start, n_layers); lower layers alias `start`'s."""
    kv: list = []
    for idx in range(n_layers):
        layer = cache.layers[idx] if idx < len(cache.layers) else None
        k = getattr(layer, "keys", None)
        if idx >= start and (k is None or k.numel() == 0):
            raise UnsupportedArchitectureError(f"no KV cache was written for layer {idx}")
        if k is not None and k.numel() and k.shape[-2] != width:
            raise UnsupportedArchitectureError("prompt longer than the attention window of a sliding layer")
        if idx < start:
            kv.append(None)
            continue
        assert k is not None and layer is not None  # a layer >= start without keys raised above
        kv.append((k.detach(), layer.values.detach()))
    first = kv[start]
    return [first if x is None else x for x in kv]


@torch.no_grad()
def prefix_pass(
    bundle, batch: PrefixBatch, start: int, n_layers: int, key_layers_below: list[int], init_layer: int | None
) -> tuple[list, torch.Tensor, dict]:
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
    pre: list[tuple[torch.nn.Module, Callable[..., None]]] = [
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
        post.append(
            (spec.layer(model, init_layer), lambda m, a, o: found.__setitem__("init", o[:, P].clone()))
        )
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
    return prefix_kv(cache, n_layers, start, P), h[:, P:], found


def prepare_groups(keys: list[tuple[int, int]], max_tokens: int) -> list[list[int]]:
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


def cached_buckets(
    bundle, prompts: ValuePrompts, pad: int, start: int, key_layers_below: list[int], init_layer: int | None
) -> tuple[list[Bucket], dict]:
    """The buckets of `prompts` with their cached prefix KV and the hidden states entering `start`, and
    what the no-grad pass read at subject_last (`prefix_pass`), one row per prompt row."""
    n_layers = bundle.spec.n_layers(bundle.model)
    all_rows, n_all = prompts.all_rows, prompts.n_all
    suffix_len, prefix_len = prompts.suffix_len, prompts.prefix_len
    # Buckets of similar suffix length; within a length, similar prefix length.
    order = sorted(range(n_all), key=lambda i: (suffix_len[i], all_rows[i].subject_col))
    # The no-grad pass runs on groups sorted by prefix length (little left padding), its results are
    # stored right-aligned per row, and each bucket takes the last P_b prefix positions of its rows.
    p_max, s_max = max(prefix_len), max(suffix_len)
    d = bundle.spec.d_model(bundle.model)
    kv_all: list | None = None
    h_all = torch.zeros(n_all, s_max, d, dtype=bundle.dtype)  # the model's dtype: bf16 models stay bf16
    grab: dict = {}
    for members in prepare_groups([(prefix_len[i], suffix_len[i]) for i in range(n_all)], PREPARE_TOKENS):
        idx = torch.tensor(members)
        batch = PrefixBatch.build(
            [list(all_rows[i].ids) for i in members], [prefix_len[i] for i in members], pad
        )
        kv, h_suf, found = prefix_pass(bundle, batch, start, n_layers, key_layers_below, init_layer)
        h_all[idx, : h_suf.shape[1]] = h_suf
        for key, value in found.items():
            grab.setdefault(key, torch.zeros(n_all, value.shape[1], dtype=value.dtype))[idx] = value
        if kv and p_max > 0:
            if kv_all is None:
                kv_all = [
                    (
                        torch.zeros(n_all, *k.shape[1:2], p_max, k.shape[3], dtype=k.dtype),
                        torch.zeros(n_all, *v.shape[1:2], p_max, v.shape[3], dtype=v.dtype),
                    )
                    if i >= start
                    else None
                    for i, (k, v) in enumerate(kv)
                ]
            width = batch.n_prefix
            for i in range(start, n_layers):
                kv_all[i][0][idx, :, p_max - width :] = kv[i][0]
                kv_all[i][1][idx, :, p_max - width :] = kv[i][1]
    buckets: list[Bucket] = []
    for members in buckets_of(suffix_len, order):
        idx = torch.tensor(members)
        batch = PrefixBatch.build(
            [list(all_rows[i].ids) for i in members], [prefix_len[i] for i in members], pad
        )
        P, S = batch.n_prefix, batch.input_ids.shape[1] - batch.n_prefix
        kv_b: list = []
        if P > 0:
            assert kv_all is not None  # filled above for every group with a prefix
            upper = [
                (kv_all[i][0][idx, :, p_max - P :], kv_all[i][1][idx, :, p_max - P :])
                for i in range(start, n_layers)
            ]
            kv_b = [upper[0]] * start + upper
        buckets.append(Bucket(idx, batch, kv_b, h_all[idx, :S]))
    return buckets, grab


@dataclass
class StepTotals:
    """Per-request sums over the buckets of one step of the value optimisation (no gradient): they decide
    its early stop."""

    nll: torch.Tensor  # target NLL
    rest: torch.Tensor  # KL + SADR
    misses: torch.Tensor  # target tokens that are not the argmax
    prob: torch.Tensor  # mean target probability over the rewriting rows

    @classmethod
    def zeros(cls, n: int) -> StepTotals:
        return cls(torch.zeros(n), torch.zeros(n), torch.zeros(n), torch.zeros(n))
