"""The store's derived indexes: checked against the record on open, rebuilt when stale, kept in step.

On open, each derived index is checked against the record (record version, id checksum, embedding
model, file checksums) and rebuilt when missing, stale or corrupt. Writes commit to the record first,
then tell `DerivedIndexes`; a crash in between only leaves indexes that the next open rebuilds.
`Embedding` holds the embedder and the name of the model the stored vectors come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import graph
import memory
import retrieval
from kedit.errors import StoreError
from kedit.store.graph_view import GraphView, fill_triples, unlink_triple
from kedit.store.hit import FACT, PASSAGE
from memory import Fact

KINDS = (FACT, PASSAGE)
VECTORS_DIR = "vectors"
GRAPH_DIR = "graph"
GRAPH_STORE = "oxigraph"
GRAPH_STAMP = "stamp.json"


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


class Embedding:
    """The embedder (MiniLM by default, loaded only when something must be embedded) and its model name,
    which the record keeps (meta `embedding_model`) from the first write on."""

    def __init__(self, record: memory.Record, embedder: Embedder | None, *, read_only: bool) -> None:
        self._record = record
        self._embedder = embedder
        self._read_only = read_only
        self._model_recorded = False

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from kedit.runtime.embeddings import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    @property
    def model_name(self) -> str:
        if self._embedder is not None:
            return getattr(self._embedder, "name", type(self._embedder).__name__)
        from kedit.runtime.embeddings import DEFAULT_NAME

        return self._record.get_meta("embedding_model") or DEFAULT_NAME

    @property
    def dim(self) -> int:
        """The vector width of an empty index (the embedder's, without loading the default one)."""
        return int(getattr(self._embedder, "dim", 384))

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed `texts` (touches nothing but the embedder, so it may run in another thread)."""
        vectors = np.asarray(self.embedder.encode(list(texts)), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise StoreError(f"the embedder returned shape {vectors.shape} for {len(texts)} texts")
        return vectors

    def note_model(self) -> None:
        """Record the model name once per open (vectors written from now on come from it)."""
        if not self._read_only and not self._model_recorded:
            if self._record.get_meta("embedding_model") != self.model_name:
                self._record.set_meta("embedding_model", self.model_name)
            self._model_recorded = True

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.encode(texts)
        self.note_model()
        return vectors


class DerivedIndexes:
    """The vector index of each kind, the RDF graph and the graph view, derived from the record.

    `synced_version` is the record version they match (-1 until loaded); `rebuilt` names what the last
    load or rebuild had to rebuild ("vectors:fact", "vectors:passage", "graph").
    """

    def __init__(
        self, root: Path, record: memory.Record, embedding: Embedding, *, read_only: bool, hnsw_threshold: int
    ) -> None:
        self.root = root
        self.record = record
        self.embedding = embedding
        self.read_only = read_only
        self.hnsw_threshold = hnsw_threshold
        self.vectors: dict[str, retrieval.VectorIndex] = {}
        self.triples: graph.TripleStore | None = None
        self.graph = GraphView(record, embedding.embed)
        self.synced_version = -1
        self.rebuilt: list[str] = []

    # -- consistency with the record ------------------------------------------------------------
    def load(self) -> None:
        """Open each index, rebuilding those that do not match the record."""
        record, version = self.record, self.record.version
        for kind in KINDS:
            try:
                index, manifest = retrieval.VectorIndex.load(self.root / VECTORS_DIR, kind)
                fresh = (
                    manifest.record_version == version
                    and manifest.extra.get("model") == self.embedding.model_name
                    and manifest.ids_sha256 == retrieval.ids_checksum(record.live_ids(kind))
                )
            except retrieval.IndexCorruptError:
                fresh = False
            if fresh:
                self.vectors[kind] = index
            else:
                self.rebuild_vectors(kind)
        stamp = graph.read_stamp(self.root / GRAPH_DIR / GRAPH_STAMP)
        graph_fresh = stamp is not None and stamp["record_version"] == version
        if self.read_only:
            if graph_fresh and (self.root / GRAPH_DIR / GRAPH_STORE).is_dir():
                self.triples = graph.TripleStore.open(self.root / GRAPH_DIR / GRAPH_STORE, read_only=True)
            else:
                self.triples = graph.TripleStore.open(None)
                fill_triples(record, self.triples)
        else:
            self.triples = graph.TripleStore.open(self.root / GRAPH_DIR / GRAPH_STORE)
            if not graph_fresh:
                self.triples.clear()
                fill_triples(record, self.triples)
                self.rebuilt.append("graph")
        self.synced_version = version
        self.flush()

    def rebuild_vectors(self, kind: str) -> None:
        """Rebuild one vector index from the vectors stored in the record (embedding missing ones)."""
        record, model = self.record, self.embedding.model_name
        missing = record.texts_without_vectors(kind, model)
        if missing and self.read_only:
            vectors = self.embedding.embed([t for _, t in missing])
        elif missing:
            vectors = self.embedding.embed([t for _, t in missing])
            record.put_vectors(kind, [i for i, _ in missing], vectors, model)
        index = None
        for ids, batch in record.iter_vectors(kind, model):
            if index is None:
                index = retrieval.VectorIndex(batch.shape[1], hnsw_threshold=self.hnsw_threshold)
            index.add(ids, batch)
        if missing and self.read_only:
            if index is None:
                index = retrieval.VectorIndex(vectors.shape[1], hnsw_threshold=self.hnsw_threshold)
            index.add([i for i, _ in missing], vectors)
        self.vectors[kind] = index or retrieval.VectorIndex(
            self.embedding.dim, hnsw_threshold=self.hnsw_threshold
        )
        self.rebuilt.append(f"vectors:{kind}")

    def rebuild(self) -> list[str]:
        """Rebuild every index from the record now; returns what was rebuilt."""
        self.rebuilt = []
        for kind in KINDS:
            self.rebuild_vectors(kind)
        assert self.triples is not None
        self.triples.clear()
        fill_triples(self.record, self.triples)
        self.rebuilt.append("graph")
        self.graph.reset()
        self.synced_version = self.record.version
        self.flush()
        return list(self.rebuilt)

    def reload(self) -> None:
        """Drop everything and load again (a read-only store catching up with a writer)."""
        if self.triples is not None:
            self.triples.close()
        self.vectors, self.triples = {}, None
        self.graph.reset()
        self.load()

    def flush(self) -> None:
        """Save the vector indexes and stamp the graph, if they match the record."""
        if self.read_only or self.synced_version != self.record.version:
            return
        for kind, index in self.vectors.items():
            index.save(
                self.root / VECTORS_DIR,
                kind,
                record_version=self.synced_version,
                extra={"model": self.embedding.model_name},
            )
        if self.triples is not None:
            self.triples._ox.flush()
            graph.write_stamp(self.root / GRAPH_DIR / GRAPH_STAMP, self.synced_version, self.record.count())

    def close(self) -> None:
        if self.triples is not None:
            self.triples.close()

    # -- keeping in step with writes ------------------------------------------------------------
    def facts_added(self, stored: Sequence[Fact], vectors: np.ndarray) -> None:
        self.vectors[FACT].add([f.id for f in stored], vectors)
        assert self.triples is not None
        self.triples.add((f.subject, f.relation, f.object, f.source) for f in stored)
        self.graph.facts_added(stored)

    def fact_updated(self, old: Fact, new: Fact, vector: np.ndarray | None) -> None:
        """`vector` is the new sentence's (None when the sentence did not change)."""
        if vector is not None:
            self.vectors[FACT].add([new.id], vector[None, :])
        assert self.triples is not None
        unlink_triple(self.record, self.triples, old)
        self.triples.add([(new.subject, new.relation, new.object, new.source)])
        self.graph.resync([(old.subject, old.relation), (new.subject, new.relation)])

    def facts_removed(self, gone: Sequence[Fact]) -> None:
        self.vectors[FACT].remove([f.id for f in gone])
        assert self.triples is not None
        for fact in gone:
            unlink_triple(self.record, self.triples, fact)
        self.graph.facts_removed(gone)

    def stats(self) -> dict[str, Any]:
        return {
            "indexes": {k: {"kind": i.kind, "count": len(i)} for k, i in self.vectors.items()},
            "graph_statements": len(self.triples) if self.triples is not None else 0,
        }
