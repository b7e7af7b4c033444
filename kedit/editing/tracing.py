"""Run a window of decoder layers, reuse cached states, and read/inject activations.

The editors never need a whole forward pass: states below the edited layer do not change while a
value is optimised, and positions before the subject's last token never change at all. `layer_window`
replaces the layers outside [start, stop) by pass-throughs and feeds a cached hidden state into layer
`start`, while keeping the model's own masks, rotary embeddings and KV cache (so every Llama-like
family works unchanged). `PrefixBatch` lays prompts out as [left-padded prefix | right-padded suffix]
so one KV cache of the prefixes serves every optimisation step.

>>> import torch
>>> b = PrefixBatch.build([[5, 6, 7], [8, 9]], [1, 0], pad_id=0)
>>> b.input_ids.tolist(), b.n_prefix
([[5, 6, 7], [0, 8, 9]], 1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from kedit.errors import UnsupportedArchitectureError

# Families whose decoder layers take and return a plain hidden-state tensor (transformers >= 5).
EDITABLE_FAMILIES = {"llama", "gemma3", "gemma", "mistral", "qwen2"}


class _PassThrough(nn.Module):
    """Stands in for a skipped decoder layer: returns its hidden state unchanged."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


def check_editable(bundle) -> None:
    if bundle.spec is None:
        raise UnsupportedArchitectureError(
            bundle.extra.get("spec_error") or f"'{bundle.name}' has no architecture spec"
        )
    if bundle.spec.family not in EDITABLE_FAMILIES:
        raise UnsupportedArchitectureError(
            f"parametric editing supports the families {sorted(EDITABLE_FAMILIES)}; "
            f"'{bundle.name}' is '{bundle.spec.family}'"
        )


def base_model(bundle) -> nn.Module:
    """The decoder stack (`model.model` for Llama-like families)."""
    return bundle.model.get_submodule(bundle.spec.layers.rsplit(".", 1)[0])


@contextlib.contextmanager
def layer_window(bundle, start: int, stop: int, hidden_in: torch.Tensor | None = None) -> Iterator[None]:
    """Inside the block, a forward of the base model runs only layers [start, stop).

    `hidden_in` (if given) replaces the hidden state entering layer `start`.
    """
    layers = bundle.model.get_submodule(bundle.spec.layers)
    originals = list(layers)
    handles = []
    try:
        for i in range(len(originals)):
            if i < start or i >= stop:
                layers[i] = _PassThrough()
        if hidden_in is not None and start < len(originals):

            def _feed(module, args, kwargs):
                return (hidden_in, *args[1:]), kwargs

            handles.append(originals[start].register_forward_pre_hook(_feed, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
        for i, module in enumerate(originals):
            layers[i] = module


@contextlib.contextmanager
def hooks(pairs: list[tuple[nn.Module, Callable]], pre: bool = False) -> Iterator[None]:
    """Register forward (or forward-pre) hooks for the duration of the block."""
    handles = []
    try:
        for module, fn in pairs:
            handles.append(module.register_forward_pre_hook(fn) if pre else module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class PrefixBatch:
    """Sequences split at a per-row position: [left-padded prefix (n_prefix) | right-padded suffix]."""

    input_ids: torch.Tensor  # (B, P+S)
    attention_mask: torch.Tensor  # (B, P+S)
    position_ids: torch.Tensor  # (B, P+S)
    n_prefix: int  # P
    suffix_len: torch.Tensor  # (B,) real suffix tokens per row

    @classmethod
    def build(cls, sequences: list[list[int]], splits: list[int], pad_id: int) -> PrefixBatch:
        n_prefix = max(splits)
        n_suffix = max(len(s) - k for s, k in zip(sequences, splits))
        batch = len(sequences)
        ids = torch.full((batch, n_prefix + n_suffix), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (seq, k) in enumerate(zip(sequences, splits)):
            ids[row, n_prefix - k : n_prefix + len(seq) - k] = torch.tensor(seq)
            mask[row, n_prefix - k : n_prefix + len(seq) - k] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        suffix_len = torch.tensor([len(s) - k for s, k in zip(sequences, splits)])
        return cls(ids, mask, positions, n_prefix, suffix_len)

    @property
    def suffix_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.n_prefix :]

    @property
    def suffix_positions(self) -> torch.Tensor:
        return self.position_ids[:, self.n_prefix :]

    def select(self, rows: torch.Tensor) -> PrefixBatch:
        return PrefixBatch(
            self.input_ids[rows],
            self.attention_mask[rows],
            self.position_ids[rows],
            self.n_prefix,
            self.suffix_len[rows],
        )


KV = tuple[
    torch.Tensor | None, torch.Tensor | None
]  # a layer's (keys, values); None where no cache was written


def full_forward(bundle, batch: PrefixBatch, stop: int | None = None) -> list[KV]:
    """One no-grad forward of the whole batch (layers [0, stop)); returns the prefix KV per layer.

    Callers read the activations they need through hooks registered around this call.
    """
    base = base_model(bundle)
    n_layers = bundle.spec.n_layers(bundle.model)
    stop = n_layers if stop is None else stop
    with torch.no_grad(), layer_window(bundle, 0, stop):
        out = base(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=batch.n_prefix > 0,
        )
    if batch.n_prefix == 0:
        return []
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    p = batch.n_prefix
    kv: list[KV] = []
    for layer in cache.layers:
        if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
            kv.append((None, None))
            continue
        if layer.keys.shape[-2] != batch.input_ids.shape[1]:
            raise UnsupportedArchitectureError("prompt longer than the attention window of a sliding layer")
        kv.append((layer.keys[..., :p, :].detach(), layer.values[..., :p, :].detach()))
    return kv


def fresh_cache(
    bundle, kv: list[tuple[torch.Tensor, torch.Tensor]], rows: torch.Tensor | None = None, start: int = 0
) -> DynamicCache:
    """A new DynamicCache holding the given prefix KV (optionally a subset of rows).

    A fresh cache per step keeps autograd graphs of different steps apart (a cropped cache would
    keep a view into the previous step's graph). Layers below `start` are never read by a window
    starting there: they get layer 0's tensors (the masks read the cache length from layer 0) instead
    of a copy of their own rows.
    """
    cache = DynamicCache(config=bundle.model.config)
    if rows is not None and len(kv) and kv[0][0] is not None and rows.numel() == kv[0][0].shape[0]:
        if torch.equal(rows, torch.arange(rows.numel())):
            rows = None  # every row: no copies
    first = None
    for idx, (k, v) in enumerate(kv):
        if k is None:  # a layer the window skipped: never read during the step either
            continue
        if 0 < idx < start and first is not None:
            k, v = first
        elif rows is not None:
            k, v = k[rows], v[rows]
        if first is None:
            first = (k, v)
        cache.update(k, v, idx)
    return cache
