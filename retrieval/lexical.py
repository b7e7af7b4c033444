"""Lexical evidence for names and numbers: dense vectors blur them, token overlap does not.

`rerank` adds to each dense score the share of the query's salient tokens (capitalised words, numbers)
found in the candidate's text, weighted by `weight`.

>>> sorted(salient_tokens("Which city was Barack Obama born in 1961?"))
['1961', 'barack', 'obama']
>>> [i for i, _ in rerank("Toko Yasuda plays", [(1, 0.50, "Yoko Ono plays"), (2, 0.45, "Toko Yasuda plays piano")])]
[2, 1]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*", re.UNICODE)
_STOP = {
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "where",
    "when",
    "why",
    "how",
    "is",
    "was",
    "the",
    "a",
    "an",
    "of",
    "in",
    "on",
    "at",
    "to",
    "by",
    "for",
    "and",
    "or",
    "it",
    "its",
    "they",
    "does",
    "do",
    "did",
    "are",
    "were",
    "that",
    "this",
    "these",
    "those",
    "with",
    "from",
    "as",
    "be",
    "has",
    "have",
    "had",
}


def tokens(text: str) -> set[str]:
    return {t.casefold() for t in _TOKEN.findall(text)}


def salient_tokens(text: str) -> set[str]:
    """Tokens that look like names or numbers (capitalised or containing a digit), minus question words."""
    found = set()
    for token in _TOKEN.findall(text):
        if any(ch.isdigit() for ch in token) or token[:1].isupper():
            folded = token.casefold()
            if folded not in _STOP:
                found.add(folded)
    return found


def rerank(
    query: str, candidates: Sequence[tuple[int, float, str]], weight: float = 0.15
) -> list[tuple[int, float]]:
    """(id, score) sorted best first; score = dense + weight * overlap of salient query tokens."""
    wanted = salient_tokens(query)
    scored = []
    for item_id, dense, text in candidates:
        overlap = len(wanted & tokens(text)) / len(wanted) if wanted else 0.0
        scored.append((item_id, float(dense) + weight * overlap))
    scored.sort(key=lambda pair: -pair[1])
    return scored
