"""Second-moment statistics C_l = E[k kᵀ] of the down_proj input over real Wikipedia text (METHODS §0).

The corpus is the Wikipedia XML excerpt and WikiText-2 in `shared_data_dir()/text-corpus` with wiki
markup stripped (never evaluation data). All requested layers are collected in one forward pass that
stops after the deepest of them; the result is cached per model as safetensors under
`cache_root()/editing/<model>/mom2_<n_tokens>.safetensors` (layers computed later are merged in).

>>> from kedit import load_model                               # doctest: +SKIP
>>> c = second_moments(load_model(), [4], n_tokens=20_000)     # doctest: +SKIP
>>> c[4].shape                                                # doctest: +SKIP
torch.Size([1536, 1536])
"""

from __future__ import annotations

import html
import logging
import os
import random
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kedit.editing.templates import editing_cache_dir
from kedit.editing.tracing import PrefixBatch, base_model, hooks, layer_window
from kedit.paths import require_data_dir

log = logging.getLogger(__name__)

_INNER_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|.*?\|\}", re.S)
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|Media|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*\]\]", re.I)
_LINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]")
_EXT_LINK = re.compile(r"\[https?://[^\s\]]*\s?([^\]]*)\]")
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"<[^>]+>")
_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M)


def strip_wiki_markup(text: str) -> str:
    """Plain prose from MediaWiki markup: templates, tables, refs, files and categories removed, links
    reduced to their text.

    >>> strip_wiki_markup("'''Paris''' is the [[capital city|capital]] of [[France]].{{cite|x}}<ref>a</ref>")
    'Paris is the capital of France.'
    """
    text = html.unescape(text)
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    for _ in range(10):  # nested templates: remove innermost first
        new = _INNER_TEMPLATE.sub("", text)
        if new == text:
            break
        text = new
    text = _TABLE.sub("", text)
    for _ in range(10):  # links nested in file captions
        new = _LINK.sub(r"\1", _FILE_LINK.sub("", text))
        if new == text:
            break
        text = new
    text = _EXT_LINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _HEADING.sub("", text)
    text = text.replace("'''", "").replace("''", "")
    lines = []
    for line in text.splitlines():
        line = line.strip().lstrip("*#:;").strip()
        if len(line.split()) >= 8:  # prose, not list debris
            lines.append(line)
    return "\n".join(lines)


def wikipedia_documents(corpus_dir: Path) -> Iterator[str]:
    """Articles of the Wikipedia XML excerpt (main namespace, markup stripped), then WikiText-2 articles."""
    for xml_path in sorted((corpus_dir / "gensim-enwiki-excerpt").glob("*")):
        for _, elem in ET.iterparse(xml_path):
            if elem.tag.endswith("}page"):
                ns = next((c.text for c in elem if c.tag.endswith("}ns")), "0")
                text_el = next((e for e in elem.iter() if e.tag.endswith("}text")), None)
                if ns == "0" and text_el is not None and text_el.text and not text_el.text.startswith("#REDIRECT"):
                    doc = strip_wiki_markup(text_el.text)
                    if doc:
                        yield doc
                elem.clear()
    for name in ("valid.txt", "test.txt"):
        path = corpus_dir / "wikitext-2" / name
        if not path.is_file():
            continue
        article: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("= ") and not line.startswith("= ="):
                if article:
                    yield "\n".join(article)
                article = []
            elif line and not line.startswith("="):
                line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
                article.append(line)
        if article:
            yield "\n".join(article)


def corpus_chunks(tokenizer, n_tokens: int, seq_len: int = 256, seed: int = 0) -> list[list[int]]:
    """Token chunks (≤ seq_len) drawn round-robin over shuffled articles until n_tokens are covered."""
    corpus_dir = require_data_dir() / "text-corpus"
    per_doc: list[list[list[int]]] = []
    total = 0
    for doc in wikipedia_documents(corpus_dir):
        ids = tokenizer(doc)["input_ids"]
        chunks = [ids[i : i + seq_len] for i in range(0, len(ids), seq_len) if len(ids[i : i + seq_len]) >= 16]
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
def compute_second_moments(bundle, layers: list[int], n_tokens: int, batch_tokens: int = 4096) -> dict[int, torch.Tensor]:
    """E[k kᵀ] at each layer's down_proj input over ~n_tokens corpus tokens, in one pass.

    One forward per batch of ~`batch_tokens` tokens serves every layer and is cut off right after the
    deepest layer's down_proj input has been read; kᵀk is one float32 matmul per batch and layer,
    folded into a float64 running sum (no precision loss over 100k tokens).
    """
    t0 = time.perf_counter()
    spec, model = bundle.spec, bundle.model
    layers = sorted(set(layers))
    chunks = corpus_chunks(bundle.tokenizer, n_tokens)
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
                base(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        except _StopForward:
            pass
        count += int(mask.sum())
    log.info(
        "kedit: second moments of layers %s over %d tokens in %.1fs (corpus %.1fs)",
        layers, count, time.perf_counter() - t0, t_corpus,
    )
    return {l: (sums[l] / count).float() for l in layers}


def _path(bundle, n_tokens: int) -> Path:
    return editing_cache_dir(bundle) / f"mom2_{n_tokens}.safetensors"


def second_moments(bundle, layers: list[int], n_tokens: int, use_cache: bool = True) -> dict[int, torch.Tensor]:
    """Cached `compute_second_moments`: loads what is on disk, computes only missing layers."""
    path = _path(bundle, n_tokens)
    have: dict[int, torch.Tensor] = {}
    if use_cache and path.is_file():
        try:
            have = {int(k.split(".")[1]): v for k, v in load_file(str(path)).items()}
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("kedit: unreadable covariance cache %s (%s); recomputing", path, exc)
    missing = sorted(set(layers) - set(have))
    if missing:  # minutes on a CPU, once per model: say so (a first weight edit would look stuck)
        log.warning("kedit: computing the key statistics of layers %s over %d Wikipedia tokens (once; cached in %s)",
                    missing, n_tokens, path.parent)
        have.update(compute_second_moments(bundle, missing, n_tokens))
        if use_cache:
            save_second_moments(bundle, n_tokens, have)
    return {l: have[l] for l in layers}


def save_second_moments(bundle, n_tokens: int, moments: dict[int, torch.Tensor]) -> Path:
    """Write (merge) per-layer statistics into the model's cache file; returns its path."""
    path = _path(bundle, n_tokens)
    have: dict[int, torch.Tensor] = {}
    if path.is_file():
        try:
            have = {int(k.split(".")[1]): v for k, v in load_file(str(path)).items()}
        except (OSError, ValueError, RuntimeError):
            have = {}
    have.update(moments)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    os.close(fd)
    save_file({f"layer.{l}": t.contiguous() for l, t in have.items()}, tmp, metadata={"n_tokens": str(n_tokens)})
    os.replace(tmp, path)
    return path
