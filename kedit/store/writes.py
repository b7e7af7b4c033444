"""Writes: each commits to the record first, then updates the derived indexes (vectors, RDF, graph view).

Errors are the ground floors' own: the facade translates them and tracks whether the indexes stay in
sync with the record. For facts, a sentence already stored (same embedding model) reuses its stored
vector, and a sentence repeated in one call is embedded once. `FactWriter.add_in_batches` pipelines: a
background thread embeds the next batch while this one is written (torch releases the GIL, so the
embedder overlaps the SQLite, FAISS and graph writes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import memory
from kedit.store.chunking import split_passages
from kedit.store.errors import StoreInputError
from kedit.store.hit import PASSAGE
from kedit.store.indexes import DerivedIndexes, Embedding
from memory import Fact, NewFact, Passage, validation

FactLike = NewFact | Mapping[str, Any] | Sequence[Any]


def as_new_fact(item: FactLike) -> NewFact:
    if isinstance(item, NewFact):
        return item
    if isinstance(item, Mapping):
        try:
            return NewFact(**item)
        except TypeError as exc:
            raise StoreInputError(f"fact fields: {exc}") from None
    if isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and 3 <= len(item) <= 4:
        return NewFact(*item)
    raise StoreInputError(
        "a fact is a NewFact, a mapping of its fields, or (subject, relation, object[, sentence])"
    )


class FactWriter:
    """Fact writes in the record, each followed by the derived indexes (vectors, RDF graph, graph view)."""

    def __init__(self, record: memory.Record, embedding: Embedding, derived: DerivedIndexes) -> None:
        self._record = record
        self._embedding = embedding
        self._derived = derived

    def prepare(self, facts: Iterable[FactLike]) -> tuple[list[NewFact], list[str], dict[str, np.ndarray]]:
        """Validate every fact, and look up the vectors of sentences already stored (same model)."""
        prepared = [self._record.prepare_fact(as_new_fact(f)) for f in facts]
        sentences = [f.sentence or "" for f in prepared]  # prepare_fact fills every sentence
        known = self._record.sentence_vectors(sentences, self._embedding.model_name) if prepared else {}
        return prepared, sentences, known

    def vectors(self, sentences: list[str], known: dict[str, np.ndarray], keep: set[str]) -> np.ndarray:
        """Vectors for `sentences`: from `known` (stored or embedded earlier), the rest embedded once each;
        those in `keep` (needed again by a later batch) are added to `known`. Touches only the embedder
        and `known`, so it may run in another thread."""
        missing = [s for s in dict.fromkeys(sentences) if s not in known]
        fresh = dict(zip(missing, self._embedding.encode(missing))) if missing else {}
        for sentence in keep & fresh.keys():
            known[sentence] = fresh[sentence]
        return np.stack([fresh[s] if s in fresh else known[s] for s in sentences]).astype(
            np.float32, copy=False
        )

    def write(self, prepared: list[NewFact], vectors: np.ndarray) -> list[Fact]:
        stored = self._record.add_facts(prepared, vectors, self._embedding.model_name, prepared=True)
        self._derived.facts_added(stored, vectors)
        return stored

    def add(self, facts: Iterable[FactLike]) -> list[Fact]:
        """Validate, embed (one batch) and write `facts` in one transaction."""
        prepared, sentences, known = self.prepare(facts)
        if not prepared:
            return []
        self._embedding.note_model()
        return self.write(prepared, self.vectors(sentences, known, set()))

    def add_in_batches(self, facts: Iterable[FactLike], batch_size: int) -> list[Fact]:
        """Validate all of `facts`, then write them `batch_size` per transaction, embedding ahead."""
        prepared, sentences, known = self.prepare(facts)
        if not prepared:
            return []
        repeated = {s for s, n in Counter(sentences).items() if n > 1 and s not in known}
        self._embedding.note_model()
        stored: list[Fact] = []
        with ThreadPoolExecutor(1, thread_name_prefix="kedit-insert") as producer:
            pending = producer.submit(self.vectors, sentences[:batch_size], known, repeated)
            for start in range(0, len(prepared), batch_size):
                vectors = pending.result()
                after = start + batch_size
                if after < len(prepared):
                    pending = producer.submit(
                        self.vectors, sentences[after : after + batch_size], known, repeated
                    )
                stored += self.write(prepared[start:after], vectors)
        return stored

    def update(self, fact_id: int, changes: Mapping[str, Any]) -> Fact:
        """Change fields in place; the sentence is embedded again only when it changed."""
        old = self._record.get_fact(fact_id)
        preview = self._record.preview_update(fact_id, changes)
        sentence = preview.sentence  # a prepared fact: always filled
        vector = (
            self._embedding.embed([sentence])[0]
            if sentence is not None and sentence != old.sentence
            else None
        )
        new = self._record.update_fact(fact_id, changes, vector, self._embedding.model_name)
        self._derived.fact_updated(old, new, vector)
        return new

    def tombstone(self, facts: Sequence[Fact]) -> list[Fact]:
        gone = self._record.tombstone_facts([f.id for f in facts])
        self._derived.facts_removed(gone)
        return gone


class PassageWriter:
    """Document and passage writes in the record, each followed by the passage vector index."""

    def __init__(self, record: memory.Record, embedding: Embedding, derived: DerivedIndexes) -> None:
        self._record = record
        self._embedding = embedding
        self._derived = derived

    def add_document(
        self,
        text: str | bytes,
        *,
        source: str,
        title: str | None,
        valid_from: Any,
        valid_to: Any,
        provenance: Mapping[str, Any] | None,
        max_chars: int,
    ) -> list[Passage]:
        """Split `text` into passages (about `max_chars` each), store and index them."""
        body = validation.clean_text(text, "document", validation.MAX_DOCUMENT_CHARS)
        chunks = split_passages(body, max_chars)
        vectors = self._embedding.embed(chunks)
        _, passages = self._record.add_document(
            chunks,
            source=source,
            title=title,
            valid_from=valid_from,
            valid_to=valid_to,
            provenance=provenance,
            vectors=vectors,
            model=self._embedding.model_name,
        )
        self._derived.vectors[PASSAGE].add([p.id for p in passages], vectors)
        return passages

    def delete_document(self, document_id: int) -> list[Passage]:
        gone = self._record.delete_document(document_id)
        self._derived.vectors[PASSAGE].remove([p.id for p in gone])
        return gone

    def redact(self, passage_id: int, text: str) -> Passage:
        vector = self._embedding.embed([text])[0]
        passage = self._record.redact_passage(passage_id, text, vector, self._embedding.model_name)
        self._derived.vectors[PASSAGE].add([passage.id], vector[None, :])
        return passage

    def tombstone(self, passage_ids: Iterable[int]) -> list[Passage]:
        gone = self._record.tombstone_passages(passage_ids)
        self._derived.vectors[PASSAGE].remove([p.id for p in gone])
        return gone
