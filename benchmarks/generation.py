"""Text generation the benchmarks need: greedy answers cut at stop strings, and EasyEdit's fluency sample.

`sample_like_easyedit` reproduces EasyEdit/ROME `generate_fast` for one prompt: top-k (5) sampling from the
renormalised top-k softmax, no stop at end-of-text, until the sequence holds `max_out_len` (100) tokens
*including the prompt*; the decoded text includes the prompt, is NFKD-normalised and has "\\n\\n" replaced
by " ". (A prompt of ≥ 100 tokens gets no new tokens, as in EasyEdit.)

>>> from kedit import load_model                                                # doctest: +SKIP
>>> greedy_generate(load_model(), "Q: What is the capital of France? A:", 8, stop=("\\n",))  # doctest: +SKIP
' Paris'
"""

from __future__ import annotations

import inspect
import unicodedata
from collections.abc import Sequence

import torch


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
def sample_ids_like_easyedit(bundle, prompt: str, max_out_len: int = 100, top_k: int = 5, seed: int = 0) -> list[int]:
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
