"""The knowledge store: one directory holding the record (source of truth), vector indexes and the graph.

On open, each derived index is checked against the record (record version, id checksum, embedding
model, file checksums) and rebuilt when missing, stale or corrupt. Every write commits to the record
first, then updates the indexes; a crash in between only leaves indexes that the next open rebuilds.

`KnowledgeStore` is the facade (error translation, index sync); the rooms behind it: `indexes`
(consistency checks, rebuild, embedding), `writes` (fact and passage writes, the pipelined batch
insert), `search` (search and rerank), `graph_view` (RDF statements, walks, the entity linker),
`portable` (export and import); its graph methods live in `graph_methods`, its vocabulary, ledger and
evidence-session methods in `ledger`.

>>> store = KnowledgeStore.open("/tmp/kb-doc")                         # doctest: +SKIP
>>> fact = store.add_fact("Ellie Kemper", "P27", "Croatia", source="edit")   # doctest: +SKIP
>>> store.search("Which country is Ellie Kemper a citizen of?", k=1)[0].fact.object  # doctest: +SKIP
'Croatia'
>>> [f.object for f in store.chain("Ellie Kemper", ["P27", "P35"])]      # doctest: +SKIP
['Croatia', 'Kolinda Grabar-Kitarović']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import memory
import retrieval
from kedit.store import portable
from kedit.store.errors import StoreInputError, StoreNotFoundError, translated
from kedit.store.graph_methods import GraphMethods
from kedit.store.hit import FACT, PASSAGE, Hit
from kedit.store.indexes import GRAPH_DIR, KINDS, VECTORS_DIR, DerivedIndexes, Embedder, Embedding
from kedit.store.ledger import LedgerMethods
from kedit.store.search import search
from kedit.store.store_path import store_dir
from kedit.store.writes import FactLike, FactWriter, PassageWriter
from memory import Fact, NewFact, Passage, validation

RECORD_FILE = "record.sqlite"


class KnowledgeStore(GraphMethods, LedgerMethods):
    """Facts and passages with time validity, searchable by meaning, walkable as a graph."""

    def __init__(
        self,
        root: Path,
        record: memory.Record,
        embedder: Embedder | None,
        *,
        read_only: bool,
        hnsw_threshold: int,
        lexical_weight: float,
    ) -> None:
        self.root = root
        self.record = record
        self.read_only = read_only
        self.lexical_weight = lexical_weight
        self.hnsw_threshold = hnsw_threshold
        self._embedding = Embedding(record, embedder, read_only=read_only)
        self._derived = DerivedIndexes(
            root, record, self._embedding, read_only=read_only, hnsw_threshold=hnsw_threshold
        )
        self._fact_writer = FactWriter(record, self._embedding, self._derived)
        self._passage_writer = PassageWriter(record, self._embedding, self._derived)
        self._closed = False

    # -- opening and closing --------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        embedder: Embedder | None = None,
        *,
        read_only: bool = False,
        hnsw_threshold: int = 50_000,
        lexical_weight: float = 0.15,
    ) -> KnowledgeStore:
        """Open (or create) the store in directory `path`.

        `embedder` has `.encode(list[str]) -> (n, d)` unit vectors; by default MiniLM, loaded only when
        something must be embedded. `read_only=True` opens beside a writer (indexes stay in memory).
        """
        root = store_dir(path)
        if read_only and not (root / RECORD_FILE).is_file():
            raise StoreNotFoundError(f"no knowledge store at {root}")
        with translated():
            if not read_only:
                (root / VECTORS_DIR).mkdir(parents=True, exist_ok=True)
                (root / GRAPH_DIR).mkdir(parents=True, exist_ok=True)
            record = memory.Record.open(root / RECORD_FILE, read_only=read_only)
        store = cls(
            root,
            record,
            embedder,
            read_only=read_only,
            hnsw_threshold=hnsw_threshold,
            lexical_weight=lexical_weight,
        )
        try:
            with translated():
                store._derived.load()
        except BaseException:
            record.close()
            raise
        return store

    def __enter__(self) -> KnowledgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Save the vector indexes and stamp the graph, if they match the record."""
        self._derived.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._derived.close()
            self.record.close()

    # -- embedding ------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        return self._embedding.embedder

    @property
    def model_name(self) -> str:
        """The embedding model the vectors come from (stored in the record at the first write)."""
        return self._embedding.model_name

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embed `texts` and note the model in the record (kedit.query embeds its questions with it)."""
        return self._embedding.embed(texts)

    # -- index consistency ----------------------------------------------------------------------
    @property
    def _indexes(self) -> dict[str, retrieval.VectorIndex]:
        """The vector index of each kind (tests and benchmarks read them)."""
        return self._derived.vectors

    @property
    def rebuilt(self) -> list[str]:
        """What opening (or the last rebuild) had to rebuild: "vectors:fact", "vectors:passage", "graph"."""
        return self._derived.rebuilt

    def rebuild_indexes(self) -> list[str]:
        """Rebuild every derived index from the record now; returns what was rebuilt."""
        self._require_writable()
        with translated():
            return self._derived.rebuild()

    def refresh(self) -> None:
        """For a read-only store: catch up with what a writer committed since open."""
        if self.record.version != self._derived.synced_version:
            with translated():
                self._derived.reload()

    # -- facts ----------------------------------------------------------------------------------
    def add_fact(
        self,
        subject: str,
        relation: str,
        object: str,
        *,
        sentence: str | None = None,
        source: str = "user",
        confidence: float = 1.0,
        valid_from: Any = None,
        valid_to: Any = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> Fact:
        """Store one fact; the sentence defaults to the relation's cloze template filled in."""
        return self.add_facts(
            [
                NewFact(
                    subject,
                    relation,
                    object,
                    sentence,
                    source,
                    confidence,
                    valid_from,
                    valid_to,
                    None if provenance is None else dict(provenance),
                )
            ]
        )[0]

    def add_facts(self, facts: Iterable[FactLike]) -> list[Fact]:
        """Store many facts in one transaction (all or nothing), embedding them in one batch.

        A sentence already stored (same embedding model) reuses its vector, and a sentence repeated in
        `facts` is embedded once."""
        with self._writing():
            return self._fact_writer.add(facts)

    def add_facts_in_batches(self, facts: Iterable[FactLike], batch_size: int = 500) -> list[Fact]:
        """Store many facts, `batch_size` per transaction, embedding the next batch while this one is written.

        Gives the same ids and vectors as calling `add_facts` on each batch in turn, faster: the embedder
        (in a background thread; torch releases the GIL) overlaps the SQLite, FAISS and graph writes.
        Every fact is validated before the first batch is written, so bad input stores nothing; if a
        write fails later, the batches before it stay stored (each batch is all or nothing).
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise StoreInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        with self._writing():
            return self._fact_writer.add_in_batches(facts, batch_size)

    def update_fact(self, fact_id: int, **changes: Any) -> Fact:
        """Change fields of a fact in place (same id); the previous version stays in `revisions`."""
        with self._writing():
            return self._fact_writer.update(fact_id, changes)

    def delete_fact(self, fact_id: int) -> Fact:
        """Tombstone one fact: gone from search and graph, kept in `history`."""
        with translated():
            fact = self.record.get_fact(fact_id)
        if fact.deleted:
            raise StoreNotFoundError(f"fact {fact_id} was already forgotten at {fact.deleted_at}")
        return self._tombstone([fact])[0]

    def forget(self, subject: str, relation: str | None = None, object: str | None = None) -> list[Fact]:
        """Tombstone every live fact matching the fields; returns them (empty when none matched)."""
        with translated():
            subject = validation.clean_name(subject, "subject")
            relation_id = None if relation is None else self.record.relations.resolve(relation).id
            live = self.record.facts(subject, relation_id, object)
        return self._tombstone(live)

    def _tombstone(self, facts: Sequence[Fact]) -> list[Fact]:
        with self._writing():
            return self._fact_writer.tombstone(facts)

    def facts(
        self,
        subject: str | None = None,
        relation: str | None = None,
        as_of: Any = None,
        include_deleted: bool = False,
        *,
        object: str | None = None,
        include_superseded: bool = True,
    ) -> list[Fact]:
        with translated():
            return self.record.facts(
                subject,
                relation,
                object,
                as_of=as_of,
                include_deleted=include_deleted,
                include_superseded=include_superseded,
            )

    def current(self, subject: str, relation: str, as_of: Any = None) -> Fact | None:
        """The fact in force for (subject, relation) at `as_of` (now): the newest valid one."""
        with translated():
            return self.record.current(subject, relation, as_of)

    def history(self, subject: str | None = None, relation: str | None = None) -> list[Fact]:
        """Every fact ever stored for the filters (forgotten and superseded too), oldest first."""
        with translated():
            return self.record.history(subject, relation)

    def fact(self, fact_id: int) -> Fact:
        with translated():
            return self.record.get_fact(fact_id)

    def revisions(self, fact_id: int) -> list[dict[str, Any]]:
        return self.record.revisions(fact_id)

    # -- documents ------------------------------------------------------------------------------
    def add_document(
        self,
        text: str | bytes,
        *,
        source: str,
        title: str | None = None,
        valid_from: Any = None,
        valid_to: Any = None,
        provenance: Mapping[str, Any] | None = None,
        max_chars: int = 600,
    ) -> list[Passage]:
        """Split `text` into passages (about `max_chars` each), store and index them."""
        with self._writing():
            return self._passage_writer.add_document(
                text,
                source=source,
                title=title,
                valid_from=valid_from,
                valid_to=valid_to,
                provenance=provenance,
                max_chars=max_chars,
            )

    def delete_document(self, document_id: int) -> list[Passage]:
        with self._writing():
            return self._passage_writer.delete_document(document_id)

    def passages(self, document_id: int | None = None) -> list[Passage]:
        return self.record.passages(document_id)

    def redact_passage(self, passage_id: int, text: str) -> Passage:
        """Replace a passage's text (e.g. with a sentence removed) and re-index it under the same id."""
        with self._writing():
            return self._passage_writer.redact(passage_id, text)

    def delete_passages(self, passage_ids: Iterable[int]) -> list[Passage]:
        """Tombstone passages (their document too once none of its passages is left); returns them."""
        with self._writing():
            return self._passage_writer.tombstone(passage_ids)

    # -- search ---------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 5,
        *,
        as_of: Any = None,
        kinds: Sequence[str] = KINDS,
        include_superseded: bool = False,
        lexical: bool = True,
    ) -> list[Hit]:
        """The `k` best facts/passages for `query`, valid `as_of` (now when None).

        Superseded facts of functional relations are left out unless `include_superseded`. Dense scores
        (cosine) get a lexical bonus for names and numbers shared with the query.
        """
        with translated():
            return search(
                self.record,
                self._indexes,
                self._embed,
                query,
                k,
                as_of=as_of,
                kinds=kinds,
                include_superseded=include_superseded,
                lexical_weight=self.lexical_weight if lexical else 0.0,
            )

    # -- export / import ------------------------------------------------------------------------
    def export(self, path: str | Path, *, graph_format: str = "nt") -> Path:
        """Write `record.jsonl` (every row, history included) and `graph.<nt|ttl>` into directory `path`."""
        with translated():
            assert self._derived.triples is not None
            return portable.export(self.record, self._derived.triples, path, graph_format=graph_format)

    def import_(self, path: str | Path, *, source: str = "import") -> list[Fact]:
        """Load an export directory or `record.jsonl`, or RDF statements (`.nt`, `.ttl`, `.nq`, `.trig`)
        as facts. Imported facts get new ids; forgotten ones are imported as forgotten."""
        return portable.import_path(self, path, source=source)

    # -- status ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "facts": self.record.count(FACT),
            "passages": self.record.count(PASSAGE),
            "record_version": self.record.version,
            **self._derived.stats(),
            "embedding_model": self.model_name,
        }


__all__ = ["Embedder", "FactLike", "KnowledgeStore"]
