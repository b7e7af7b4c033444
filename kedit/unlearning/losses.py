"""Teacher-forced answer log-probabilities and the unlearning losses built on them (docs/methods.md §5.1).

Every loss here is per example (a vector over the batch): the engine weights and sums them itself, so
that one backward pass yields the forget gradient and each retain direction separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kedit.scoring import encode_pair


@dataclass
class AnswerBatch:
    """(prompt, answer) pairs encoded for one forward pass that scores only the answer tokens.

    The text is `prompt + " " + answer` (as `kedit.scoring`), right padded. `keep` lists the sequence
    positions whose logits are needed (passed as `logits_to_keep`, so the vocabulary projection runs on
    those positions only); answer token j of row b is predicted by kept column `cols[j]` of row `rows[j]`.
    """

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    keep: torch.Tensor  # (K,) positions whose logits are computed
    rows: torch.Tensor  # (N,) batch row of each answer token
    cols: torch.Tensor  # (N,) index into `keep` of the position that predicts it
    targets: torch.Tensor  # (N,) answer token ids
    first: torch.Tensor  # (B,) index into the N answer tokens of each row's first answer token
    lengths: torch.Tensor  # (B,) answer tokens per row

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @classmethod
    def encode(
        cls, tokenizer, pairs: Sequence[tuple[str, str]], device: torch.device | str = "cpu"
    ) -> AnswerBatch:
        """Encode pairs.

        >>> from kedit import load_model                                         # doctest: +SKIP
        >>> b = AnswerBatch.encode(load_model().tokenizer, [("The capital of France is", "Paris")])  # doctest: +SKIP
        >>> b.lengths.tolist()                                                   # doctest: +SKIP
        [1]
        """
        encoded = [encode_pair(tokenizer, p, a) for p, a in pairs]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        rows: list[int] = []
        positions: list[int] = []
        targets: list[int] = []
        first: list[int] = []
        lengths: list[int] = []
        for b, (ids, n_prompt) in enumerate(encoded):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            mask[b, : len(ids)] = 1
            # A prompt of zero tokens cannot predict the first answer token; encode_pair keeps >= 1.
            start = max(n_prompt, 1)
            first.append(len(targets))
            lengths.append(len(ids) - start)
            for pos in range(start, len(ids)):
                rows.append(b)
                positions.append(pos - 1)
                targets.append(ids[pos])
        keep = sorted(set(positions))
        col_of = {p: i for i, p in enumerate(keep)}
        return cls(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            keep=torch.tensor(keep, dtype=torch.long, device=device),
            rows=torch.tensor(rows, dtype=torch.long, device=device),
            cols=torch.tensor([col_of[p] for p in positions], dtype=torch.long, device=device),
            targets=torch.tensor(targets, dtype=torch.long, device=device),
            first=torch.tensor(first, dtype=torch.long, device=device),
            lengths=torch.tensor(lengths, dtype=torch.long, device=device),
        )


def encode_chunks(
    tokenizer, pairs: Sequence[tuple[str, str]], rows: int, device: torch.device | str = "cpu"
) -> list[tuple[AnswerBatch, torch.Tensor]]:
    """`pairs` as batches of at most `rows` pairs, each with the indices of its pairs in `pairs`.

    One batch (in the given order) when they fit; otherwise sorted by length first, so each batch pads
    only to its own longest pair (a thousand facts padded to the longest one would be mostly padding).
    """
    if len(pairs) <= rows:
        return [(AnswerBatch.encode(tokenizer, pairs, device), torch.arange(len(pairs), device=device))]
    lengths = [len(encode_pair(tokenizer, p, a)[0]) for p, a in pairs]
    order = sorted(range(len(pairs)), key=lengths.__getitem__)
    parts = [order[start : start + rows] for start in range(0, len(order), rows)]
    return [
        (AnswerBatch.encode(tokenizer, [pairs[i] for i in part], device), torch.tensor(part, device=device))
        for part in parts
    ]


@dataclass
class AnswerScores:
    """Per-row outcome of one teacher-forced pass: sequence log-prob (differentiable) and first-token rank."""

    logprob: torch.Tensor  # (B,) sum of answer-token log-probs
    first_rank: torch.Tensor  # (B,) rank of the first answer token (0 = top prediction)


def answer_scores(model: torch.nn.Module, batch: AnswerBatch) -> AnswerScores:
    """log π(answer | prompt) for each row, teacher forced, answer tokens only.

    Gradients flow through `logprob` when the model has trainable parameters.
    """
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=batch.keep
    ).logits.float()
    picked = logits[batch.rows, batch.cols]  # (N, V) logits predicting each answer token
    token_lp = picked.log_softmax(-1).gather(1, batch.targets[:, None]).squeeze(1)
    logprob = torch.zeros(len(batch), dtype=token_lp.dtype, device=token_lp.device).index_add(
        0, batch.rows, token_lp
    )
    with torch.no_grad():
        first_logits = picked[batch.first]
        first_target = first_logits.gather(1, batch.targets[batch.first][:, None])
        first_rank = (first_logits > first_target).sum(-1)
    return AnswerScores(logprob=logprob, first_rank=first_rank)


def ga_loss(logprob: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the forget NLL: minimise log π(y|x) (= −NLL).

    >>> ga_loss(torch.tensor([-0.5])).tolist()
    [-0.5]
    """
    return logprob


def npo_loss(logprob: torch.Tensor, ref_logprob: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """NPO: −(2/β)·log σ(−β·(log π_θ(y|x) − log π_ref(y|x))).

    `ref_logprob` are the frozen pre-unlearning log-probs, computed once, so no reference model copy is
    kept. At θ = θ_ref its gradient equals GA's; it fades as the answer becomes unlikely.

    >>> round(float(npo_loss(torch.tensor([-1.0]), torch.tensor([-1.0]), 0.1)), 4)  # (2/β)·log 2
    13.8629
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * (logprob - ref_logprob))


def simnpo_loss(
    logprob: torch.Tensor, lengths: torch.Tensor, beta: float = 0.1, delta: float = 0.0
) -> torch.Tensor:
    """SimNPO (reference free): −(2/β)·log σ(−(β/|y|)·log π_θ(y|x) − δ).

    >>> bool(simnpo_loss(torch.tensor([-5.0]), torch.tensor([1])) < simnpo_loss(torch.tensor([-0.1]), torch.tensor([1])))
    True
    """
    return -(2.0 / beta) * F.logsigmoid(-(beta / lengths.to(logprob.dtype)) * logprob - delta)


def nll_loss(logprob: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Retain NLL per answer token (length-normalised, as TOFU), per row.

    >>> nll_loss(torch.tensor([-2.0]), torch.tensor([2])).tolist()
    [1.0]
    """
    return -logprob / lengths.to(logprob.dtype)


def row_terms(
    cfg, logprob: torch.Tensor, ref_logprob: torch.Tensor, lengths: torch.Tensor, is_forget: torch.Tensor
) -> torch.Tensor:
    """Per-row loss of one batch: `cfg.objective` (an `UnlearnConfig`'s) on the forget rows, NLL on the rest."""
    lp_f = logprob[is_forget]
    if cfg.objective == "npo":
        forget_terms = npo_loss(lp_f, ref_logprob[is_forget], cfg.beta)
    elif cfg.objective == "ga":
        forget_terms = ga_loss(lp_f)
    else:
        forget_terms = simnpo_loss(lp_f, lengths[is_forget], cfg.beta, cfg.simnpo_delta)
    terms = torch.zeros_like(logprob)
    terms[is_forget] = forget_terms
    terms[~is_forget] = nll_loss(logprob[~is_forget], lengths[~is_forget])
    return terms
