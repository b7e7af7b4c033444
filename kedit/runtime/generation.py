"""Batched greedy generation: many prompts' continuations in a few forward passes (shared prompt prefixes
computed once, left padding), the same tokens as one `model.generate(do_sample=False)` per prompt.

>>> from kedit.runtime import load_model                                      # doctest: +SKIP
>>> complete_many(load_model(), ["The capital of France is"], 3)[0]          # doctest: +SKIP
' Paris.'
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Sequence

from kedit.runtime.copying import Span, SpanCopier


def _cache_arg(model) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _common_prefix(rows: list[list[int]]) -> int:
    n = min(len(r) for r in rows)
    first = rows[0]
    for i in range(n):
        if any(r[i] != first[i] for r in rows[1:]):
            return i
    return n


def _out_cache(out, arg: str):
    cache = getattr(out, arg, None)
    return cache if cache is not None else out.past_key_values


def _eos_ids(bundle) -> set[int]:
    """End-of-text ids as `generate` uses them (the generation config's, plus the tokenizer's)."""
    ids = {bundle.tokenizer.eos_token_id}
    config = getattr(bundle.model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None) if config is not None else None
    ids |= set(extra) if isinstance(extra, (list, tuple)) else {extra}
    return {i for i in ids if i is not None}


def _line_boundary(tok, ids: list[int], n: int) -> int:
    """Length of the longest prefix of `ids[:n]` that ends with a newline token (0 if none)."""
    for i in range(n - 1, -1, -1):
        if "\n" in tok.decode([ids[i]]):
            return i + 1
    return 0


_UNTIL = ("newline", "line", "none")


def _copiers(tok, copy_from: Sequence[Span | None], eos: set[int]) -> list[SpanCopier | None]:
    """A span copier per prompt that copies (ended by end of text or a newline piece)."""
    newline = {i for text in ("\n", "\n\n") for i in tok(text, add_special_tokens=False)["input_ids"]}
    return [SpanCopier(tok, span, eos | newline) if span is not None else None for span in copy_from]


def _finished(text: str, until: str) -> bool:
    if until == "newline":
        return "\n" in text
    if until == "line":
        return "\n" in text.lstrip()
    return False


_LONG = 48  # prompts at least this long (tokens) are batched by shared prefix (few-shot demos)
_BATCH_OVERHEAD = 64  # a new batch costs about this many prefill tokens (its decode steps)


def _batches(indices: list[int], ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Batches of prompt indices that waste little padding: short prompts sorted by length; long ones
    sorted by their tokens (shared prefixes adjacent) and merged while the padded cost stays below the
    cost of separate batches."""
    short = sorted((i for i in indices if len(ids[i]) < _LONG), key=lambda i: len(ids[i]))
    out = [short[s : s + batch_size] for s in range(0, len(short), batch_size)]
    cur: list[int] = []
    prefix = longest = 0
    for i in sorted((i for i in indices if len(ids[i]) >= _LONG), key=lambda i: ids[i]):
        if cur:
            n_prefix = min(prefix, _common_prefix([ids[cur[-1]], ids[i]]), len(ids[i]) - 1)
            width = max(longest, len(ids[i]))
            merged = n_prefix + (len(cur) + 1) * (width - n_prefix)
            apart = prefix + len(cur) * (longest - prefix) + len(ids[i]) + _BATCH_OVERHEAD
            if len(cur) < batch_size and merged <= apart:
                cur.append(i)
                prefix, longest = n_prefix, width
                continue
            out.append(cur)
        cur, prefix, longest = [i], len(ids[i]) - 1, len(ids[i])
    if cur:
        out.append(cur)
    return out


def greedy_many(
    bundle,
    prompts: Sequence[str],
    max_new_tokens: int | Sequence[int],
    *,
    until: str = "none",
    batch_size: int = 32,
    stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    prefix_cache: dict | None = None,
    banned_first: Sequence[Collection[int]] | None = None,
    copy_from: Sequence[Span | None] | None = None,
) -> list[list[int]]:
    """Greedy continuations of many prompts, batched; returns each prompt's new token ids.

    The same tokens as one `model.generate(do_sample=False)` per prompt (up to float rounding of the
    batched matmuls): prompts are sorted by their tokens, a batch's common token prefix is run once and
    its keys/values shared, the rest is left-padded (masked, positions kept). A row stops at its own
    budget, at end-of-text, or when its decoded text meets `until`: "newline" (a newline anywhere, as a
    `\\n` stop string does), "line" (a newline after some non-space text: enough for the first line of
    the stripped text) or "none", or when `stop_when[i]` (if given) returns True for its text.

    `banned_first[i]` (if given) holds token ids prompt i's first new token may not be (the next best is
    taken): a closed-book answer that would only repeat its question's subject is asked for again this way.
    `copy_from[i]` (if given and not None) is the `Span` prompt i's continuation must be: a span of its
    texts (`kedit.runtime.copying`), which is how an answer is read from a passage.

    A shared prefix of at least 48 tokens is cut at its last newline and its keys/values kept in
    `prefix_cache` (a dict the caller may pass to share them between calls: only while the weights do
    not change) for every batch with that prefix.
    """
    import torch

    if until not in _UNTIL:
        raise ValueError(f"until must be one of {_UNTIL}, not {until!r}")
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if (
        len(budgets) != len(prompts)
        or (stop_when is not None and len(stop_when) != len(prompts))
        or (banned_first is not None and len(banned_first) != len(prompts))
        or (copy_from is not None and len(copy_from) != len(prompts))
    ):
        raise ValueError(f"{len(prompts)} prompts but {len(budgets)} budgets")
    tok, model = bundle.tokenizer, bundle.model
    arg = _cache_arg(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    ids = [tok(p)["input_ids"] for p in prompts]
    eos = _eos_ids(bundle)
    copiers = _copiers(tok, copy_from, eos) if copy_from is not None else [None] * len(prompts)
    prefix_cache = {} if prefix_cache is None else prefix_cache
    results: list[list[int]] = [[] for _ in prompts]
    device = bundle.device
    with torch.no_grad():
        for rows in _batches([i for i in range(len(prompts)) if budgets[i] > 0], ids, batch_size):
            seqs = [ids[i] for i in rows]
            n_prefix = min(_common_prefix(seqs), min(len(s) for s in seqs) - 1)
            cache = None
            if n_prefix > 0:
                # a few-shot prefix (up to its last newline) is kept for the next batches of this call
                n_key = _line_boundary(tok, seqs[0], n_prefix)
                if n_key >= _LONG:
                    key = tuple(seqs[0][:n_key])
                    if key not in prefix_cache:
                        out = model(
                            input_ids=torch.tensor([list(key)], device=device),
                            use_cache=True,
                            logits_to_keep=1,
                        )
                        prefix_cache[key] = _out_cache(out, arg)
                    cache, n_prefix = copy.deepcopy(prefix_cache[key]), n_key
                else:
                    out = model(
                        input_ids=torch.tensor([seqs[0][:n_prefix]], device=device),
                        use_cache=True,
                        logits_to_keep=1,
                    )
                    cache = _out_cache(out, arg)
                if len(rows) > 1:
                    cache.batch_repeat_interleave(len(rows))
            tails = [s[n_prefix:] for s in seqs]
            width = max(len(t) for t in tails)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), n_prefix + width), dtype=torch.long)
            mask[:, :n_prefix] = 1
            positions = torch.zeros((len(rows), width), dtype=torch.long)
            for r, t in enumerate(tails):
                input_ids[r, width - len(t) :] = torch.tensor(t)
                mask[r, n_prefix + width - len(t) :] = 1
                positions[r, width - len(t) :] = torch.arange(n_prefix, n_prefix + len(t))
            nxt_pos = torch.tensor([n_prefix + len(t) for t in tails])
            live = list(range(len(rows)))  # batch row -> index into rows
            new: list[list[int]] = [[] for _ in rows]
            step = 0
            while live:
                kwargs = {arg: cache} if cache is not None else {}
                out = model(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    use_cache=True,
                    logits_to_keep=1,
                    **kwargs,
                )
                cache = _out_cache(out, arg)
                logits = out.logits[:, -1]
                if step == 0 and banned_first is not None:
                    for b, r in enumerate(live):
                        banned = list(banned_first[rows[r]])
                        if banned:
                            logits[b, banned] = float("-inf")
                for b, r in enumerate(live if copy_from is not None else ()):
                    copier = copiers[rows[r]]
                    allowed = sorted(copier.allowed(new[r])) if copier is not None else []
                    if allowed:  # the span goes on, or ends (copying.py)
                        kept = logits[b, allowed].clone()
                        logits[b] = float("-inf")
                        logits[b, allowed] = kept
                picked = logits.argmax(-1).tolist()
                step += 1
                keep = []
                for b, r in enumerate(live):
                    t = picked[b]
                    done = t in eos
                    if not done:
                        new[r].append(t)
                        done = len(new[r]) >= budgets[rows[r]]
                        if not done and (until != "none" or stop_when is not None):
                            text = tok.decode(new[r], skip_special_tokens=True)
                            check = stop_when[rows[r]] if stop_when is not None else None
                            done = _finished(text, until) or (check is not None and check(text))
                    if not done:
                        keep.append(b)
                if not keep:
                    break
                if len(keep) < len(live):
                    cache.batch_select_indices(torch.tensor(keep, device=device))
                    mask, nxt_pos = mask[keep], nxt_pos[keep]
                    picked = [picked[b] for b in keep]
                    live = [live[b] for b in keep]
                input_ids = torch.tensor(picked, dtype=torch.long).unsqueeze(1)
                mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long)], dim=1)
                positions = nxt_pos.unsqueeze(1).clone()
                nxt_pos = nxt_pos + 1
            for r, i in enumerate(rows):
                results[i] = new[r]
    return results


def complete_many(
    bundle,
    prompts: Sequence[str],
    max_new_tokens: int | Sequence[int] = 8,
    *,
    until: str = "none",
    batch_size: int = 32,
    stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    prefix_cache: dict | None = None,
    banned_first: Sequence[Collection[int]] | None = None,
    copy_from: Sequence[Span | None] | None = None,
) -> list[str]:
    """Decoded greedy continuations of `prompts` (see `greedy_many`)."""
    tok = bundle.tokenizer
    return [
        tok.decode(t, skip_special_tokens=True)
        for t in greedy_many(
            bundle,
            prompts,
            max_new_tokens,
            until=until,
            batch_size=batch_size,
            stop_when=stop_when,
            prefix_cache=prefix_cache,
            banned_first=banned_first,
            copy_from=copy_from,
        )
    ]
