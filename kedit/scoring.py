"""Teacher-forced scoring of target continuations: the measure behind edit verification and the
KnowEdit metrics (EasyEdit's `test_prediction_acc`).

For a prompt p and target t the text is `p + " " + t`; the target tokens are those after the tokens of
`p` alone; the model's argmax at each position that predicts a target token is compared with it. The
accuracy is the share of matching tokens (partial credit), exactly as EasyEdit computes rewrite,
rephrase and portability accuracy; locality compares the predicted tokens before and after an edit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TargetScore:
    """Teacher-forced score of one target after one prompt."""

    accuracy: float  # share of target tokens that are the argmax prediction
    logprob: float  # sum of the target tokens' log-probabilities
    n_tokens: int
    predicted: tuple[int, ...]  # argmax token ids at the target positions
    target: tuple[int, ...]
    first_token_rank: int  # 0 = the first target token is the model's top prediction

    @property
    def prob(self) -> float:
        """Probability of the whole target sequence."""
        return math.exp(self.logprob)

    @property
    def mean_prob(self) -> float:
        """Geometric-mean per-token probability (comparable across target lengths)."""
        return math.exp(self.logprob / max(1, self.n_tokens))


def encode_pair(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """Token ids of `prompt + " " + target` and how many of them belong to the prompt."""
    target = target.strip()
    full = tokenizer(f"{prompt} {target}" if prompt else target)["input_ids"]
    n_prompt = len(tokenizer(prompt)["input_ids"]) if prompt else 0
    # Guard against a tokenizer merging across the boundary: keep at least one target token.
    n_prompt = min(n_prompt, len(full) - 1)
    return list(full), n_prompt


@torch.no_grad()
def score_targets(bundle, prompts: list[str], targets: list[str], batch_size: int = 16) -> list[TargetScore]:
    """Score each `targets[i]` as the continuation of `prompts[i]` in one forward pass per batch.

    >>> from kedit import load_model                              # doctest: +SKIP
    >>> s = score_targets(load_model(), ["The capital of France is"], ["Paris"])[0]  # doctest: +SKIP
    >>> s.accuracy                                                # doctest: +SKIP
    1.0
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    model, tok = bundle.model, bundle.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: list[TargetScore] = []
    for start in range(0, len(prompts), batch_size):
        pairs = [
            encode_pair(tok, p, t)
            for p, t in zip(prompts[start : start + batch_size], targets[start : start + batch_size])
        ]
        width = max(len(ids) for ids, _ in pairs)
        input_ids = torch.full((len(pairs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for i, (ids, _) in enumerate(pairs):  # right padding keeps positions unchanged
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
        # Logits only from the first position that predicts a target token on (the vocabulary
        # projection of the prompt positions would be a fifth of the pass, and is never read).
        first = min(max(n_prompt - 1, 0) for _, n_prompt in pairs)
        keep = torch.arange(first, width - 1, device=bundle.device)
        logits = model(
            input_ids=input_ids.to(bundle.device), attention_mask=mask.to(bundle.device), logits_to_keep=keep
        ).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        for i, (ids, n_prompt) in enumerate(pairs):
            target_ids = torch.tensor(ids[n_prompt:])
            lo = (n_prompt - 1 if n_prompt > 0 else 0) - first
            rows = logprobs[i, lo : len(ids) - 1 - first]
            if n_prompt == 0:  # no prompt: the first token cannot be predicted
                target_ids = target_ids[1:]
            rows = rows.cpu()
            predicted = rows.argmax(-1)
            token_lp = rows.gather(1, target_ids[:, None]).squeeze(1)
            first_rank = int((rows[0] > rows[0, target_ids[0]]).sum()) if len(target_ids) else 0
            out.append(
                TargetScore(
                    accuracy=float((predicted == target_ids).float().mean()) if len(target_ids) else 0.0,
                    logprob=float(token_lp.sum()),
                    n_tokens=len(target_ids),
                    predicted=tuple(int(x) for x in predicted),
                    target=tuple(int(x) for x in target_ids),
                    first_token_rank=first_rank,
                )
            )
    return out


def token_agreement(before: TargetScore, after: TargetScore) -> float:
    """Locality: share of positions where the argmax token is unchanged by an edit."""
    n = min(len(before.predicted), len(after.predicted))
    if n == 0:
        return 0.0
    return sum(a == b for a, b in zip(before.predicted[:n], after.predicted[:n])) / n
