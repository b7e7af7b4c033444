"""Search by meaning: dense nearest neighbours per kind, filtered to what is valid, then reranked.

Dense scores (cosine) get a lexical bonus for names and numbers shared with the query
(`retrieval.rerank`); superseded facts of functional relations are left out unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import memory
import retrieval
from kedit.store.errors import StoreInputError
from kedit.store.hit import FACT, Hit
from kedit.store.indexes import KINDS
from memory import Fact, Passage, validation


def _text(row: Fact | Passage) -> str:
    return row.sentence if isinstance(row, Fact) else row.text


def search(
    record: memory.Record,
    indexes: Mapping[str, retrieval.VectorIndex],
    embed: Callable[[list[str]], np.ndarray],
    query: str,
    k: int,
    *,
    as_of: Any,
    kinds: Sequence[str],
    include_superseded: bool,
    lexical_weight: float,
) -> list[Hit]:
    """The `k` best facts/passages for `query`, valid `as_of` (now when None), best first."""
    text = validation.clean_text(query, "query", validation.MAX_SENTENCE_CHARS)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise StoreInputError(f"unknown kinds {sorted(unknown)}; use {KINDS}")
    when = validation.to_timestamp(as_of, "as_of") or validation.now_timestamp()
    vector = embed([text])[0]
    hits: list[Hit] = []
    for kind in kinds:
        hits += search_kind(
            record, indexes[kind], kind, text, vector, k, when, include_superseded, lexical_weight
        )
    hits.sort(key=lambda h: -h.score)
    return hits[:k]


def search_kind(
    record: memory.Record,
    index: retrieval.VectorIndex,
    kind: str,
    text: str,
    vector: np.ndarray,
    k: int,
    when: str,
    include_superseded: bool,
    lexical_weight: float,
) -> list[Hit]:
    """The `k` best live items of one kind: fetch more neighbours until `k` survive the filters."""
    fetch = max(4 * k, 20)
    while True:
        found = index.search(vector, fetch)
        rows: Mapping[int, Fact | Passage] = (
            record.get_facts(i for i, _ in found)
            if kind == FACT
            else record.get_passages(i for i, _ in found)
        )
        live = {i: r for i, r in rows.items() if r.deleted_at is None and r.valid_at(when)}
        if kind == FACT and not include_superseded:
            current = record.current_among([r for r in live.values() if isinstance(r, Fact)], when)
            live = {i: r for i, r in live.items() if i in current}
        keep = [(item_id, score, _text(live[item_id])) for item_id, score in found if item_id in live]
        if len(keep) >= k or len(found) < fetch:
            break
        fetch *= 4
    ranked = retrieval.rerank(text, keep, lexical_weight)
    hits = []
    for item_id, score in ranked[:k]:
        row = rows[item_id]
        hits.append(Hit.of_fact(row, score) if isinstance(row, Fact) else Hit.of_passage(row, score))
    return hits
