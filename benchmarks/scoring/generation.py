"""Text generation the benchmarks need: greedy answers cut at stop strings, and EasyEdit's fluency sample.

`sample_like_easyedit` reproduces EasyEdit/ROME `generate_fast` for one prompt: top-k (5) sampling from the
renormalised top-k softmax, no stop at end-of-text, until the sequence holds `max_out_len` (100) tokens
*including the prompt*; the decoded text includes the prompt, is NFKD-normalised and has "\\n\\n" replaced
by " ". (A prompt of ≥ 100 tokens gets no new tokens, as in EasyEdit.) `sample_many_like_easyedit` draws
the same texts for many prompts in one left-padded, KV-cached batch, each row from its own generator and,
through `row_weights`, with its own edited matrices (the batched KnowEdit harness).

>>> from kedit import load_model                                                # doctest: +SKIP
>>> greedy_generate(load_model(), "Q: What is the capital of France? A:", 8, stop=("\\n",))  # doctest: +SKIP
' Paris'
"""

from __future__ import annotations

import inspect
import unicodedata
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kedit.errors import KeditError


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest stop string.

    >>> cut_at_stop(" Paris\\nQ: next", ["\\n"])
    ' Paris'
    """
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


@torch.no_grad()
def greedy_generate(bundle, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> str:
    """Greedy continuation of `prompt` (continuation only), cut at the first stop string."""
    tok, model = bundle.tokenizer, bundle.model
    enc = tok(prompt, return_tensors="pt").to(bundle.device)
    kwargs = {}
    if stop:
        kwargs = {"stop_strings": list(stop), "tokenizer": tok}
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        **kwargs,
    )
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return cut_at_stop(text, stop)


def sample_like_easyedit(bundle, prompt: str, max_out_len: int = 100, top_k: int = 5, seed: int = 0) -> str:
    """EasyEdit's fluency text for one prompt (see the module docstring); `seed` makes it repeatable."""
    ids = sample_ids_like_easyedit(bundle, prompt, max_out_len, top_k, seed)
    text = bundle.tokenizer.decode(ids, skip_special_tokens=True)
    return unicodedata.normalize("NFKD", text).replace("\n\n", " ").replace("<|endoftext|>", "")


@torch.no_grad()
def sample_ids_like_easyedit(
    bundle, prompt: str, max_out_len: int = 100, top_k: int = 5, seed: int = 0
) -> list[int]:
    """Token ids (prompt included) of EasyEdit's top-k sample: `max(max_out_len, len(prompt))` of them."""
    tok, model = bundle.tokenizer, bundle.model
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = tok(prompt, return_tensors="pt")["input_ids"].to(bundle.device)
    # transformers >= 5.2x names the KV cache `cache`; older releases `past_key_values`
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    past = None
    step_input = ids
    while ids.shape[1] < max_out_len:
        out = model(input_ids=step_input, use_cache=True, **{cache_arg: past})
        past = out[cache_arg] if cache_arg in out else out.past_key_values
        probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
        top = torch.topk(probs, top_k, dim=-1)
        weights = top.values / top.values.sum(dim=-1, keepdim=True)
        choice = torch.multinomial(weights, 1, generator=gen)
        new = top.indices.gather(1, choice).to(bundle.device)
        ids = torch.cat([ids, new], dim=1)
        step_input = new
    return ids[0].tolist()


@contextmanager
def row_weights(model, per_row: Sequence[Mapping[str, torch.Tensor]]):
    """Within the block, batch row i of a forward uses weight `per_row[i][name]` for each named
    `nn.Linear` weight instead of the model's (the rows need not agree). Each edited row is computed
    alone, as a batch of one would be; rows without an override share the model's weight.

    Raises `RowWeightsError` for a name that is not the weight of an `nn.Linear` (no bias override)."""
    names = sorted({n for row in per_row for n in row})
    modules = dict(model.named_modules())
    patched: list[torch.nn.Module] = []
    try:
        for name in names:
            mod_name, _, attr = name.rpartition(".")
            module = modules.get(mod_name)
            if attr != "weight" or not isinstance(module, torch.nn.Linear):
                raise RowWeightsError(f"{name} is not the weight of an nn.Linear; cannot override it per row")
            rows = [row.get(name) for row in per_row]
            module.forward = _per_row_forward(module, rows)  # type: ignore[method-assign]
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward


def overridable(model, names) -> bool:
    """Whether every name is the weight of an `nn.Linear` of `model` (what `row_weights` can override)."""
    modules = dict(model.named_modules())
    for name in names:
        mod_name, _, attr = name.rpartition(".")
        if attr != "weight" or not isinstance(modules.get(mod_name), torch.nn.Linear):
            return False
    return True


def _per_row_forward(module: torch.nn.Linear, rows: list[torch.Tensor | None]):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(rows):
            raise RowWeightsError(f"a batch of {x.shape[0]} rows, {len(rows)} row weights")
        plain = [i for i, w in enumerate(rows) if w is None]
        out = torch.empty((*x.shape[:-1], module.out_features), dtype=x.dtype, device=x.device)
        if plain:
            idx = torch.tensor(plain, device=x.device)
            out[idx] = F.linear(x[idx], module.weight, module.bias)
        for i, w in enumerate(rows):
            if w is not None:
                out[i : i + 1] = F.linear(x[i : i + 1], w, module.bias)
        return out

    return forward


class RowWeightsError(KeditError, ValueError):
    """A per-row weight override that the batched sampler cannot apply."""


@dataclass(frozen=True)
class FluencyRequest:
    """One fluency sample: `text` sampled to `max_out_len` tokens in all (prompt included); the sample is
    `head` followed by the decoded tokens from `keep_from` on. A plain sample is the prompt alone; a store
    method samples its prompt framed by retrieved facts and keeps the prompt and the continuation."""

    text: str
    max_out_len: int = 100
    keep_from: int = 0
    head: str = ""


def sample_requests(
    bundle,
    requests: Sequence[FluencyRequest],
    seeds: Sequence[int],
    top_k: int = 5,
    per_row: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> list[str]:
    """The fluency text of every request, decoded together (`sample_ids_many`): row i from its own
    generator seeded `seeds[i]` and, with `per_row`, with its own edited matrices."""
    ids = sample_ids_many(
        bundle, [r.text for r in requests], seeds, [r.max_out_len for r in requests], top_k, per_row
    )
    tok = bundle.tokenizer
    return [
        unicodedata.normalize("NFKD", r.head + tok.decode(row[r.keep_from :], skip_special_tokens=True))
        .replace("\n\n", " ")
        .replace("<|endoftext|>", "")
        for r, row in zip(requests, ids)
    ]


def sample_many_like_easyedit(
    bundle,
    prompts: Sequence[str],
    seeds: Sequence[int],
    max_out_len: int = 100,
    top_k: int = 5,
    per_row: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> list[str]:
    """`sample_like_easyedit(bundle, prompts[i], seed=seeds[i])` for every i, decoded together: one
    left-padded prefill, then one KV-cached forward per step for all rows; row i draws from its own
    generator exactly as the single-prompt loop does. `per_row[i]` (name -> weight) gives row i the
    weights of its own edited model (see `row_weights`), so the samples of several edits share a pass."""
    requests = [FluencyRequest(p, max_out_len) for p in prompts]
    return sample_requests(bundle, requests, seeds, top_k, per_row)


@torch.no_grad()
def sample_ids_many(
    bundle,
    prompts: Sequence[str],
    seeds: Sequence[int],
    max_out_len: int | Sequence[int] = 100,
    top_k: int = 5,
    per_row: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> list[list[int]]:
    """Token ids of `sample_ids_like_easyedit` for each prompt (see `sample_many_like_easyedit`);
    `max_out_len` is one length for every row or each row's own."""
    if len(prompts) != len(seeds) or (per_row is not None and len(per_row) != len(prompts)):
        raise ValueError(f"{len(prompts)} prompts, {len(seeds)} seeds, {len(per_row or prompts)} row weights")
    if not prompts:
        return []
    tok, model = bundle.tokenizer, bundle.model
    rows = [tok(p)["input_ids"] for p in prompts]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    input_ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], device=bundle.device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=bundle.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    lengths = [max_out_len] * len(rows) if isinstance(max_out_len, int) else list(max_out_len)
    if len(lengths) != len(rows):
        raise ValueError(f"{len(prompts)} prompts, {len(lengths)} lengths")
    wanted = [max(0, n - len(r)) for n, r in zip(lengths, rows)]  # a prompt of >= n tokens gets none
    new: list[list[int]] = [[] for _ in rows]
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    past, step_ids, step_pos = None, input_ids, positions
    with row_weights(model, per_row or [{} for _ in rows]):
        for _ in range(max(wanted)):
            out = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                use_cache=True,
                logits_to_keep=1,
                **{cache_arg: past},
            )
            past = out[cache_arg] if cache_arg in out else out.past_key_values
            picked = []
            for i in range(len(rows)):
                probs = torch.softmax(out.logits[i : i + 1, -1, :].float(), dim=-1).cpu()
                top = torch.topk(probs, top_k, dim=-1)
                weights = top.values / top.values.sum(dim=-1, keepdim=True)
                choice = torch.multinomial(weights, 1, generator=gens[i])
                picked.append(int(top.indices.gather(1, choice)))
                if len(new[i]) < wanted[i]:
                    new[i].append(picked[-1])
            step_ids = torch.tensor(picked, device=bundle.device)[:, None]
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return [list(r) + n for r, n in zip(rows, new)]
