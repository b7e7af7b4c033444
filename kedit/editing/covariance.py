"""Second-moment statistics C_l = E[k kᵀ] of the down_proj input over Wikipedia text (docs/methods.md §0.3).

The text is a `StatsCorpus` (kedit/editing/corpus.py): by default the Wikipedia excerpt installed with
kedit, never evaluation data. All requested layers are collected in one forward pass that stops after the
deepest of them; the result is cached per model and corpus as safetensors under
`cache_root()/editing/<model>/mom2_<n_tokens>_<corpus digest>.safetensors` (layers computed later are
merged in). `load_second_moments` reads such a file, so precomputed statistics can be handed over.

>>> from kedit import load_model                               # doctest: +SKIP
>>> c = second_moments(load_model(), [4], n_tokens=20_000)     # doctest: +SKIP
>>> c[4].shape                                                # doctest: +SKIP
torch.Size([1536, 1536])
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kedit.editing.corpus import StatsCorpus, resolve_corpus
from kedit.editing.templates import editing_cache_dir
from kedit.editing.tracing import PrefixBatch, base_model, hooks, layer_window

log = logging.getLogger(__name__)


def corpus_chunks(
    tokenizer, n_tokens: int, seq_len: int = 256, seed: int = 0, corpus: StatsCorpus | None = None
) -> list[list[int]]:
    """Token chunks (≤ seq_len) drawn round-robin over shuffled articles until n_tokens are covered."""
    per_doc: list[list[list[int]]] = []
    total = 0
    for text in resolve_corpus(corpus).documents():
        ids = tokenizer(text)["input_ids"]
        chunks = [
            ids[i : i + seq_len] for i in range(0, len(ids), seq_len) if len(ids[i : i + seq_len]) >= 16
        ]
        if chunks:
            per_doc.append(chunks)
            total += sum(len(c) for c in chunks)
        if total >= 3 * n_tokens:  # enough material to sample from
            break
    random.Random(seed).shuffle(per_doc)
    out: list[list[int]] = []
    have = 0
    depth = 0
    while have < n_tokens and any(depth < len(d) for d in per_doc):
        for doc in per_doc:
            if depth < len(doc):
                out.append(doc[depth])
                have += len(doc[depth])
                if have >= n_tokens:
                    break
        depth += 1
    return out


class _StopForward(Exception):
    """Raised by the deepest layer's hook: nothing after it is needed."""


@torch.no_grad()
def compute_second_moments(
    bundle, layers: list[int], n_tokens: int, batch_tokens: int = 4096, corpus: StatsCorpus | None = None
) -> dict[int, torch.Tensor]:
    """E[k kᵀ] at each layer's down_proj input over ~n_tokens corpus tokens, in one pass.

    One forward per batch of ~`batch_tokens` tokens serves every layer and is cut off right after the
    deepest layer's down_proj input has been read; kᵀk is one float32 matmul per batch and layer,
    folded into a float64 running sum (no precision loss over 100k tokens).
    """
    t0 = time.perf_counter()
    spec, model = bundle.spec, bundle.model
    layers = sorted(set(layers))
    chunks = corpus_chunks(bundle.tokenizer, n_tokens, corpus=corpus)
    chunks.sort(key=len, reverse=True)  # similar lengths per batch: little padding
    t_corpus = time.perf_counter() - t0
    d_ff = spec.d_ff(model)
    sums = {l: torch.zeros(d_ff, d_ff, dtype=torch.float64) for l in layers}
    part_sum = torch.empty(d_ff, d_ff, dtype=torch.float32)
    count = 0
    pad = bundle.tokenizer.pad_token_id or 0
    base = base_model(bundle)
    deepest = layers[-1]
    start = 0
    while start < len(chunks):
        per_batch = max(1, batch_tokens // len(chunks[start]))
        part = chunks[start : start + per_batch]
        start += per_batch
        batch = PrefixBatch.build(part, [0] * len(part), pad)  # right padding only
        mask = batch.attention_mask.bool()

        def grab(l, mask=mask):
            def fn(m, a):
                k = a[0][mask].float()  # (tokens, d_ff), non-pad tokens only
                torch.mm(k.T, k, out=part_sum)
                sums[l].add_(part_sum)
                if l == deepest:
                    raise _StopForward

            return fn

        pairs = [(spec.down_proj_module(model, l), grab(l)) for l in layers]
        try:
            with hooks(pairs, pre=True), layer_window(bundle, 0, deepest + 1):
                base(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                )
        except _StopForward:
            pass
        count += int(mask.sum())
    log.info(
        "kedit: second moments of layers %s over %d tokens in %.1fs (corpus %.1fs)",
        layers,
        count,
        time.perf_counter() - t0,
        t_corpus,
    )
    return {l: (sums[l] / count).float() for l in layers}


def _path(bundle, n_tokens: int, corpus: StatsCorpus) -> Path:
    return editing_cache_dir(bundle) / f"mom2_{n_tokens}_{corpus.digest}.safetensors"


def load_second_moments(path: str | Path) -> dict[int, torch.Tensor]:
    """Per-layer statistics from a safetensors file of `layer.<l>` tensors (as `save_second_moments` writes)."""
    tensors = load_file(str(path))
    try:
        return {int(k.split(".")[1]): v.float() for k, v in tensors.items()}
    except (IndexError, ValueError) as exc:
        raise ValueError(
            f"{path}: statistics tensors must be named 'layer.<index>', found {sorted(tensors)[:3]}"
        ) from exc


def second_moments(
    bundle, layers: list[int], n_tokens: int, use_cache: bool = True, corpus: StatsCorpus | None = None
) -> dict[int, torch.Tensor]:
    """Cached `compute_second_moments`: loads what is on disk, computes only missing layers."""
    corpus = resolve_corpus(corpus)
    path = _path(bundle, n_tokens, corpus)
    have: dict[int, torch.Tensor] = {}
    if use_cache and path.is_file():
        try:
            have = load_second_moments(path)
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("kedit: unreadable covariance cache %s (%s); recomputing", path, exc)
    missing = sorted(set(layers) - set(have))
    if missing:  # a minute or two on a CPU, once per model: say so (a first weight edit would look stuck)
        log.warning(
            "kedit: computing the key statistics of layers %s over %d tokens of %s (once; cached in %s)",
            missing,
            n_tokens,
            corpus.name,
            path.parent,
        )
        have.update(compute_second_moments(bundle, missing, n_tokens, corpus=corpus))
        if use_cache:
            save_second_moments(bundle, n_tokens, have, corpus)
    return {l: have[l] for l in layers}


def save_second_moments(
    bundle, n_tokens: int, moments: dict[int, torch.Tensor], corpus: StatsCorpus | None = None
) -> Path:
    """Write (merge) per-layer statistics into the model's cache file for `corpus`; returns its path."""
    corpus = resolve_corpus(corpus)
    path = _path(bundle, n_tokens, corpus)
    have: dict[int, torch.Tensor] = {}
    if path.is_file():
        try:
            have = load_second_moments(path)
        except (OSError, ValueError, RuntimeError):
            have = {}
    have.update(moments)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    os.close(fd)
    meta = {"n_tokens": str(n_tokens), "corpus": corpus.name, "corpus_digest": corpus.digest}
    save_file({f"layer.{l}": t.detach().cpu().contiguous() for l, t in have.items()}, tmp, metadata=meta)
    os.replace(tmp, path)
    return path
