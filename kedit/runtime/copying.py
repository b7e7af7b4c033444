"""Copy-constrained decoding: an answer read from a passage is a span of that passage.

A small model asked to read a passage often answers from its own memory ("Who was Tetris created by?"
over "Records list Tetris's creator as Mark Burnett." gives "Alexey Pajitnov") or with a preamble ("The
answer is:"). Reading is extractive: at each step the next token must continue a span of one of the
passages (as tokenised after a space, so a mid-sentence word has the same pieces as in the answer), and
once a span has started, the end of text or a newline may end it; a span may not start with a word of
the question (`Span.not_from`: copying the question's own words, "The Eiffel Tower was ...", is never
its answer, and greedy decoding is drawn to it). Greedy decoding under this mask picks
the span the model finds likeliest, which is what an extractive reader does; the rest of the model's
work (the prompt, batching, the key/value cache) is unchanged (`greedy_many(copy_from=...)`).

Written by hand: transformers' `prefix_allowed_tokens_fn` does the same inside `generate`, which the
batched decoder here does not call.

>>> class Tok:  # a toy tokenizer: one id per word
...     def __call__(self, text, add_special_tokens=False):
...         return {"input_ids": [len(w) for w in text.split()]}
>>> copier = SpanCopier(Tok(), Span(("aa bbb c",)), stop_ids={0})
>>> sorted(copier.allowed([]))          # any word of the passage may start the span
[1, 2, 3]
>>> sorted(SpanCopier(Tok(), Span(("aa bbb c",), not_from="x"), stop_ids={0}).allowed([]))
[2, 3]
>>> sorted(copier.allowed([2]))         # after "aa": "bbb" continues it, or it ends
[0, 3]
>>> sorted(copier.allowed([1]))         # "c" ends the passage: only the end
[0]
>>> whole = SpanCopier(Tok(), Span(("aa bbb", "c"), whole=True), stop_ids={0})
>>> sorted(whole.allowed([])), sorted(whole.allowed([2])), sorted(whole.allowed([2, 3]))  # a text whole
([1, 2], [3], [0])
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A continuation that must be a span of one of `texts`, not starting with a word of `not_from`; with
    `whole`, one of `texts` from its first token to its last (a name is answered whole: "Gate Dancer",
    not "Dancer")."""

    texts: tuple[str, ...]
    not_from: str = ""
    whole: bool = False


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text.strip() else []


class SpanCopier:
    """The tokens that may come next when the continuation must be a span of `span`'s texts."""

    def __init__(self, tokenizer, span: Span, stop_ids: Collection[int]) -> None:
        self.pieces = [ids for text in span.texts if (ids := _ids(tokenizer, " " + text.strip()))]
        # the question's words as they start a span: after a space, and as written
        words = span.not_from.split()
        self.not_first = {i for w in words for i in _ids(tokenizer, " " + w)[:1] + _ids(tokenizer, w)[:1]}
        self.stop_ids = set(stop_ids)
        self.whole = span.whole

    def allowed(self, so_far: list[int]) -> set[int]:
        """Ids that continue `so_far` as a span of some text; the stop ids once a span has started."""
        n = len(so_far)
        nxt: set[int] = set()
        if self.whole:
            for ids in self.pieces:
                if ids[:n] == so_far:
                    nxt |= {ids[n]} if n < len(ids) else self.stop_ids
            return nxt
        for ids in self.pieces:
            for j in range(len(ids) - n):
                if ids[j : j + n] == so_far:
                    nxt.add(ids[j + n])
        if not n:  # a start that is not a word of the question, if the passage has one
            return (nxt - self.not_first) or nxt
        return nxt | self.stop_ids
