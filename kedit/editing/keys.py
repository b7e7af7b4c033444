"""Tokenised edit prompts and MLP keys (down_proj inputs) at the subject's last token.

A row is one templated prompt of one request; `subject_col` is the index of the subject's last token.
Keys at subject_last depend only on tokens up to it, so rows are truncated there when only keys are
needed (MEMIT/AlphaEdit recompute keys after every layer update).

>>> from kedit import load_model                                        # doctest: +SKIP
>>> from kedit.editing.requests import EditRequest                      # doctest: +SKIP
>>> b = load_model(); r = EditRequest("{} is a citizen of", "Paris Hilton", "France")  # doctest: +SKIP
>>> rows = build_rows(b.tokenizer, [r], ["{}"], target=True)            # doctest: +SKIP
>>> rows[0].subject_col == len(b.tokenizer("Paris Hilton")["input_ids"]) - 1  # doctest: +SKIP
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kedit.editing.requests import EditRequest
from kedit.editing.tracing import PrefixBatch, base_model, hooks, layer_window


@dataclass(frozen=True)
class Row:
    request: int  # index of the request
    template: int  # index of the template (0 = bare "{}")
    ids: tuple[int, ...]  # prompt tokens (+ target[:-1] when built with target=True)
    subject_col: int  # subject_last index in ids
    n_prompt: int  # tokens of the prompt alone


def target_ids(tokenizer, target: str) -> list[int]:
    """Target tokens with a leading space (docs/methods.md §0.1), no special tokens."""
    ids = tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"target '{target}' tokenises to nothing")
    return list(ids)


def fill(template: str, request: EditRequest) -> tuple[str, str]:
    """(text up to and including the subject, full prompt text) of `request` in `template`."""
    combined = template.replace("{}", request.prompt, 1)
    pre, post = combined.split("{}", 1)
    return pre + request.subject, pre + request.subject + post


def build_rows(
    tokenizer, requests: list[EditRequest], templates: list[str], target: bool, truncate: bool = False
) -> list[Row]:
    """Rows for every (request, template): request-major order."""
    rows: list[Row] = []
    for i, req in enumerate(requests):
        tgt = target_ids(tokenizer, req.target) if target else []
        for j, tpl in enumerate(templates):
            upto, text = fill(tpl, req)
            prompt_ids = list(tokenizer(text)["input_ids"])
            col = min(len(tokenizer(upto)["input_ids"]) - 1, len(prompt_ids) - 1)
            ids = prompt_ids[: col + 1] if truncate else prompt_ids + tgt[:-1]
            rows.append(Row(i, j, tuple(ids), col, len(prompt_ids)))
    return rows


def kl_rows(tokenizer, requests: list[EditRequest], first_request: int = 0) -> list[Row]:
    """One "{subject} is a" row per request: the KL anchor of ROME/MEMIT (docs/methods.md §1.2)."""
    rows = []
    for i, req in enumerate(requests):
        ids = list(tokenizer(req.subject + " is a")["input_ids"])
        col = min(len(tokenizer(req.subject)["input_ids"]) - 1, len(ids) - 1)
        rows.append(Row(first_request + i, -1, tuple(ids), col, len(ids)))
    return rows


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@torch.no_grad()
def collect_at_subject(
    bundle,
    rows: list[Row],
    key_layers: list[int],
    out_layers: Sequence[int] = (),
    batch_size: int = 256,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Down_proj inputs (keys) at `key_layers` and block outputs at `out_layers`, at subject_last.

    Returns ({layer: (n_rows, d_ff)}, {layer: (n_rows, d)}). Rows are run only up to the deepest
    layer needed, truncated at the subject (later tokens cannot influence it).
    """
    spec, model = bundle.spec, bundle.model
    stop = max([*key_layers, *out_layers]) + 1
    keys: dict[int, list[torch.Tensor]] = {l: [] for l in key_layers}
    outs: dict[int, list[torch.Tensor]] = {l: [] for l in out_layers}
    base = base_model(bundle)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs = [list(r.ids[: r.subject_col + 1]) for r in chunk]
        # Split every row at its subject column: the subject's last token is suffix column 0.
        batch = PrefixBatch.build(seqs, [r.subject_col for r in chunk], pad_id(bundle.tokenizer))
        col = batch.n_prefix
        found: dict = {}

        def _key(layer, found=found, col=col):
            return lambda m, a: found.__setitem__(("k", layer), a[0][:, col].clone())

        def _out(layer, found=found, col=col):
            return lambda m, a, o: found.__setitem__(("o", layer), o[:, col].clone())

        pre = [(spec.down_proj_module(model, l), _key(l)) for l in key_layers]
        post = [(spec.layer(model, l), _out(l)) for l in out_layers]
        with hooks(pre, pre=True), hooks(post), layer_window(bundle, 0, stop):
            base(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
            )
        for l in key_layers:
            keys[l].append(found[("k", l)])
        for l in out_layers:
            outs[l].append(found[("o", l)])
    return ({l: torch.cat(v) for l, v in keys.items()}, {l: torch.cat(v) for l, v in outs.items()})


class SubjectRuns:
    """Rows truncated at the subject, batched once, run repeatedly while MEMIT updates layers bottom-up.

    After a layer l is edited, states entering l are unchanged; `collect(..., resume=l)` therefore
    restarts at layer l from the hidden states remembered by the previous call (`remember=l`) instead of
    running the whole stack again.
    """

    def __init__(self, bundle, rows: list[Row], batch_size: int = 256):
        self.bundle = bundle
        self.rows = rows
        self.batches: list[PrefixBatch] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            seqs = [list(r.ids[: r.subject_col + 1]) for r in chunk]
            # Split every row at its subject column: the subject's last token is suffix column 0.
            self.batches.append(
                PrefixBatch.build(seqs, [r.subject_col for r in chunk], pad_id(bundle.tokenizer))
            )
        self.saved: dict[int, list[torch.Tensor]] = {}

    @torch.no_grad()
    def collect(
        self,
        key_layers: list[int],
        out_layers: Sequence[int] = (),
        resume: int | None = None,
        remember: int | None = None,
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """Keys at `key_layers` and block outputs at `out_layers` at subject_last (as `collect_at_subject`)."""
        spec, model = self.bundle.spec, self.bundle.model
        stop = max([*key_layers, *out_layers]) + 1
        if resume is not None and resume not in self.saved:
            raise KeyError(f"no hidden states remembered at layer {resume}")
        start = resume if resume is not None else 0
        keys: dict[int, list[torch.Tensor]] = {l: [] for l in key_layers}
        outs: dict[int, list[torch.Tensor]] = {l: [] for l in out_layers}
        base = base_model(self.bundle)
        new_saved: list[torch.Tensor] = []
        for b, batch in enumerate(self.batches):
            col = batch.n_prefix
            found: dict = {}

            def _key(layer, found=found, col=col):
                return lambda m, a: found.__setitem__(("k", layer), a[0][:, col].clone())

            def _out(layer, found=found, col=col):
                return lambda m, a, o: found.__setitem__(("o", layer), o[:, col].clone())

            pre = [(spec.down_proj_module(model, l), _key(l)) for l in key_layers]
            if remember is not None:
                pre.append(
                    (
                        spec.layer(model, remember),
                        lambda m, a, found=found: found.__setitem__("h", a[0].clone()),
                    )
                )
            post = [(spec.layer(model, l), _out(l)) for l in out_layers]
            hidden = self.saved[resume][b] if resume is not None else None
            with hooks(pre, pre=True), hooks(post), layer_window(self.bundle, start, stop, hidden_in=hidden):
                base(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                )
            for l in key_layers:
                keys[l].append(found[("k", l)])
            for l in out_layers:
                outs[l].append(found[("o", l)])
            if remember is not None:
                new_saved.append(found["h"])
        if remember is not None:
            self.saved[remember] = new_saved
        return ({l: torch.cat(v) for l, v in keys.items()}, {l: torch.cat(v) for l, v in outs.items()})


def grouped_keys(rows: list[Row], row_keys: torch.Tensor, n_requests: int) -> torch.Tensor:
    """MEMIT's key: ½·k(bare "{}") + ½·mean over the prefixed templates, per request -> (n, d_ff)."""
    d_ff = row_keys.shape[1]
    bare = torch.zeros(n_requests, d_ff, dtype=row_keys.dtype)
    pref_sum = torch.zeros(n_requests, d_ff, dtype=row_keys.dtype)
    pref_n = torch.zeros(n_requests, 1, dtype=row_keys.dtype)
    for r, k in zip(rows, row_keys):
        if r.template == 0:
            bare[r.request] = k
        else:
            pref_sum[r.request] += k
            pref_n[r.request] += 1
    has_pref = pref_n.squeeze(1) > 0
    out = bare.clone()
    out[has_pref] = 0.5 * bare[has_pref] + 0.5 * pref_sum[has_pref] / pref_n[has_pref]
    return out


def mean_keys(rows: list[Row], row_keys: torch.Tensor, n_requests: int) -> torch.Tensor:
    """ROME's key: plain mean over all templates (bare included), per request -> (n, d_ff)."""
    idx = torch.tensor([r.request for r in rows])
    total = torch.zeros(n_requests, row_keys.shape[1], dtype=row_keys.dtype).index_add_(0, idx, row_keys)
    count = torch.bincount(idx, minlength=n_requests).clamp(min=1).to(row_keys.dtype)
    return total / count[:, None]
