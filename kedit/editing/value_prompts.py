"""The prompts of the value optimisation (docs/methods.md §1.2): rewriting rows and KL anchors, laid out.

Rewriting rows are every (request, context template) with the target appended (minus its last token);
the loss reads the target's log-probabilities at `tgt_cols`. KL anchors are one "{subject} is a" row per
request, cut at subject_last (the KL is read there and later tokens cannot influence it). Positions are
in suffix coordinates: column 0 is subject_last, where δ is written.

>>> from kedit import load_model                                                    # doctest: +SKIP
>>> from kedit.editing import EditRequest                                           # doctest: +SKIP
>>> b = load_model(); r = EditRequest("{} is a citizen of", "Paris Hilton", "France")  # doctest: +SKIP
>>> p = value_prompts(b.tokenizer, [r], ["{}"]); p.n_rw, p.n_all                    # doctest: +SKIP
(1, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kedit.editing.keys import Row, build_rows, kl_rows, target_ids
from kedit.editing.requests import EditRequest


@dataclass
class ValuePrompts:
    """Rewriting rows then KL anchors (`all_rows`), with the per-row indices the loss reads."""

    n_requests: int
    rows: list[Row]  # rewriting rows, request-major
    all_rows: list[Row]  # rewriting rows + KL anchors
    row_req: torch.Tensor  # (n_all,) request of each row
    is_kl: torch.Tensor  # (n_all,) bool: a KL anchor
    rw_count: torch.Tensor  # (n,) rewriting rows per request (at least 1), float
    tgt_cols: (
        torch.Tensor
    )  # (n_all, t_max) target positions in suffix coordinates (0 with mask 0 for anchors)
    tgt_ids: torch.Tensor  # (n_all, t_max) target token ids
    tgt_mask: torch.Tensor  # (n_all, t_max) 1 where a target token is
    bare: torch.Tensor  # the bare-prompt ("{}") rewriting row of each request, in request order

    @property
    def n_rw(self) -> int:
        return len(self.rows)

    @property
    def n_all(self) -> int:
        return len(self.all_rows)

    @property
    def query_cols(self) -> torch.Tensor:
        """SADR's query: the position predicting the first target token."""
        return self.tgt_cols[:, 0]

    @property
    def prefix_len(self) -> list[int]:
        """Tokens before subject_last, per row (never re-run: their KV is cached)."""
        return [r.subject_col for r in self.all_rows]

    @property
    def suffix_len(self) -> list[int]:
        """Tokens from subject_last on, per row (re-run at every step)."""
        return [len(r.ids) - r.subject_col for r in self.all_rows]


def value_prompts(tokenizer, requests: list[EditRequest], templates: list[str]) -> ValuePrompts:
    """The rewriting rows of `requests` in `templates`, their KL anchors and target positions."""
    n = len(requests)
    rows = build_rows(tokenizer, requests, templates, target=True)
    # The KL is read at the anchor's subject_last: later tokens cannot influence it, so cut them.
    anchors = [
        Row(r.request, r.template, r.ids[: r.subject_col + 1], r.subject_col, r.subject_col + 1)
        for r in kl_rows(tokenizer, requests)
    ]
    all_rows = rows + anchors
    n_rw, n_all = len(rows), len(all_rows)
    row_req = torch.tensor([r.request for r in all_rows])
    is_kl = torch.zeros(n_all, dtype=torch.bool)
    is_kl[n_rw:] = True
    rw_count = torch.bincount(row_req[:n_rw], minlength=n).clamp(min=1).float()

    tgts = [target_ids(tokenizer, q.target) for q in requests]
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
    bare = torch.tensor([i for i, r in enumerate(rows) if r.template == 0])
    return ValuePrompts(n, rows, all_rows, row_req, is_kl, rw_count, tgt_cols, tgt_ids, tgt_mask, bare)
