"""`mello`: MQuAKE's memory-based method (MeLLo) over a kedit store of the batch's edits.

>>> m = MeLLoMethod(bundle)                                  # doctest: +SKIP
>>> m.answer_multihop("Who is the head of state of the country Ellie Kemper is a citizen of?", prompts).answer  # doctest: +SKIP
'Kolinda Grabar-Kitarović'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.data.prompts import MQuAKEPrompts
from benchmarks.methods.base import MultiHopAnswer
from benchmarks.methods.store import RagMethod

MELLO_ROUNDS = 4
MELLO_TOKENS_PER_ROUND = 80
MELLO_STOP = ("Retrieved fact:", "\n\nQuestion:")
_FINAL = "Final answer: "
_SUB = "Subquestion: "


class PrefixCachedGreedy:
    """Greedy generation that keeps the KV cache of the last text it saw and reuses it for the longest
    common token prefix of the next prompt (MeLLo's prompts share ~1k tokens of demos and grow by a few
    lines per round). Same tokens as `greedy_generate` on the whole prompt; only the prefill is saved.
    Valid while the weights do not change (MeLLo never edits them)."""

    def __init__(self, bundle) -> None:
        import inspect

        self.bundle = bundle
        forward = inspect.signature(bundle.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        self._ids: list[int] = []  # tokens whose keys/values are in the cache
        self._cache = None

    def __call__(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> str:
        import torch
        from transformers import DynamicCache

        from benchmarks.scoring.generation import cut_at_stop

        tok, model = self.bundle.tokenizer, self.bundle.model
        ids = tok(prompt)["input_ids"]
        n = 0
        for a, b in zip(self._ids, ids):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)  # at least one token to feed
        if self._cache is None or n == 0 or self._cache.get_seq_length() != len(self._ids):
            self._cache, n = DynamicCache(), 0
        elif len(self._ids) > n:
            self._cache.crop(n - len(self._ids))  # transformers 5: a negative count of tokens to drop
        fed = ids[:n]
        feed = ids[n:]
        new: list[int] = []
        text = ""
        with torch.no_grad():
            for _ in range(max_new_tokens):
                out = model(
                    input_ids=torch.tensor([feed], device=self.bundle.device),
                    use_cache=True,
                    **{self._cache_arg: self._cache},
                )
                fed += feed
                nxt = int(out.logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                new.append(nxt)
                text = tok.decode(new, skip_special_tokens=True)
                if any(s in text for s in stop):
                    break
                feed = [nxt]
        self._ids = fed
        return cut_at_stop(text, stop)


class MeLLoMethod(RagMethod):
    """MeLLo (MQuAKE's memory-based method): the batch's edits are a memory of fact sentences
    (`prompt.format(subject) + " " + target_new`, MiniLM + FAISS through `kl.store.search`); the model
    decomposes the question with MeLLo's 4-demo prompt, and each subquestion retrieves the top-1 fact,
    which the model checks against its own answer (≤ 4 rounds, generation stopped at `Retrieved fact:`).

    Single-hop probes (edit-wise cloze and hop questions) get the top-1 fact in context, as `rag` does.
    Besides MeLLo's stop string, generation also stops at a new demo (`\\n\\nQuestion:`), which only saves
    tokens: after a `Final answer:` line MeLLo stops reading.
    """

    name = "mello"
    k = 1
    record_every = 4  # 30-120 s per case: a batch of 100 is recorded as it goes, so it resumes mid-batch

    def __init__(self, bundle, *, k: int | None = None, embedder=None) -> None:
        super().__init__(bundle, k=k, embedder=embedder)
        self._greedy = PrefixCachedGreedy(bundle)

    def settings(self) -> dict[str, Any]:
        return {"k": self.k, "rounds": MELLO_ROUNDS, "tokens_per_round": MELLO_TOKENS_PER_ROUND}

    def answer_multihop(
        self, question: str, prompts: MQuAKEPrompts, cot: bool = False, max_new_tokens: int = 24
    ) -> MultiHopAnswer:
        start = prompts.mello_query(question)
        prompt = start
        answer = None
        for _ in range(MELLO_ROUNDS):
            gen = self._greedy(prompt, MELLO_TOKENS_PER_ROUND, stop=MELLO_STOP)
            lines = gen.strip().split("\n")
            if lines[-1].startswith(_FINAL):
                answer = lines[-1][len(_FINAL) :].strip()
                prompt += gen
                break
            if len(lines) < 2 or not lines[-2].startswith(_SUB):
                prompt += gen
                break  # MeLLo: a failed case (no subquestion to look up)
            sub = lines[-2][len(_SUB) :].strip()
            found = self.retrieve(sub, k=1)
            if not found:
                prompt += gen
                break
            prompt = prompt + gen + "Retrieved fact: " + found[0].strip().rstrip(".") + "."
        return MultiHopAnswer(answer, prompt[len(start) :])

    def answer_multihop_many(
        self,
        questions: Sequence[str],
        prompts: MQuAKEPrompts,
        cot: bool = False,
        max_new_tokens: Sequence[int] | None = None,
        stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[MultiHopAnswer]:
        """MeLLo's loop is sequential (each round reads the last): one question at a time."""
        return [self.answer_multihop(q, prompts, cot=cot) for q in questions]
