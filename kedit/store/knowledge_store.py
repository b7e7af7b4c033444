"""The knowledge store: one directory holding the record (source of truth), vector indexes and the graph.

On open, each derived index is checked against the record (record version, id checksum, embedding
model, file checksums) and rebuilt when missing, stale or corrupt. Every write commits to the record
first, then updates the indexes; a crash in between only leaves indexes that the next open rebuilds.

>>> store = KnowledgeStore.open("/tmp/kb-doc")                         # doctest: +SKIP
>>> fact = store.add_fact("Ellie Kemper", "P27", "Croatia", source="edit")   # doctest: +SKIP
>>> store.search("Which country is Ellie Kemper a citizen of?", k=1)[0].fact.object  # doctest: +SKIP
'Croatia'
>>> [f.object for f in store.chain("Ellie Kemper", ["P27", "P35"])]      # doctest: +SKIP
['Croatia', 'Kolinda Grabar-Kitarović']
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import graph
import memory
import retrieval
from kedit.errors import StoreError
from kedit.store.chunking import split_passages
from kedit.store.errors import (
    ReadOnlyStoreError,
    StoreCorruptError,
    StoreInputError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownRelationError,
)
from kedit.store.hit import FACT, PASSAGE, Hit
from kedit.store.store_path import store_dir
from memory import EditEntry, EvidenceSession, Fact, NewFact, Passage, Relation, validation

KINDS = (FACT, PASSAGE)
RECORD_FILE = "record.sqlite"
VECTORS_DIR = "vectors"
GRAPH_DIR = "graph"
GRAPH_STORE = "oxigraph"
GRAPH_STAMP = "stamp.json"
EXPORT_RECORD = "record.jsonl"


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


FactLike = NewFact | Mapping[str, Any] | Sequence[Any]


@contextmanager
def _translated() -> Iterator[None]:
    """Ground-floor errors as StoreError subclasses with the same message."""
    try:
        yield
    except StoreError:
        raise
    except memory.UnknownRelationError as exc:
        raise UnknownRelationError(str(exc)) from None
    except (memory.InvalidInputError, retrieval.VectorInputError, graph.GraphInputError) as exc:
        raise StoreInputError(str(exc)) from None
    except memory.WriterLockedError as exc:
        raise StoreLockedError(str(exc)) from None
    except memory.ReadOnlyError as exc:
        raise ReadOnlyStoreError(str(exc)) from None
    except memory.NotFoundError as exc:
        raise StoreNotFoundError(str(exc)) from None
    except (memory.SchemaError, graph.GraphStoreError) as exc:
        raise StoreCorruptError(str(exc)) from None


def _as_new_fact(item: FactLike) -> NewFact:
    if isinstance(item, NewFact):
        return item
    if isinstance(item, Mapping):
        try:
            return NewFact(**item)
        except TypeError as exc:
            raise StoreInputError(f"fact fields: {exc}") from None
    if isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and 3 <= len(item) <= 4:
        return NewFact(*item)
    raise StoreInputError("a fact is a NewFact, a mapping of its fields, or (subject, relation, object[, sentence])")


class KnowledgeStore:
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
        self._embedder = embedder
        self._model_recorded = False
        self._indexes: dict[str, retrieval.VectorIndex] = {}
        self._triples: graph.TripleStore | None = None
        self._view: graph.MultiHopGraph | None = None
        self._linker: graph.EntityLinker | None = None
        self._synced_version = -1
        self.rebuilt: list[str] = []
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
        with _translated():
            if not read_only:
                (root / VECTORS_DIR).mkdir(parents=True, exist_ok=True)
                (root / GRAPH_DIR).mkdir(parents=True, exist_ok=True)
            record = memory.Record.open(root / RECORD_FILE, read_only=read_only)
        store = cls(root, record, embedder, read_only=read_only, hnsw_threshold=hnsw_threshold,
                    lexical_weight=lexical_weight)
        try:
            with _translated():
                store._load_indexes()
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
        if self.read_only or self._synced_version != self.record.version:
            return
        for kind, index in self._indexes.items():
            index.save(self.root / VECTORS_DIR, kind, record_version=self._synced_version,
                       extra={"model": self.model_name})
        if self._triples is not None:
            self._triples._ox.flush()
            graph.write_stamp(self.root / GRAPH_DIR / GRAPH_STAMP, self._synced_version, self.record.count())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            if self._triples is not None:
                self._triples.close()
            self.record.close()

    # -- embedding ------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from kedit.runtime.embeddings import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    @property
    def model_name(self) -> str:
        """The embedding model the vectors come from (stored in the record at the first write)."""
        if self._embedder is not None:
            return getattr(self._embedder, "name", type(self._embedder).__name__)
        from kedit.runtime.embeddings import DEFAULT_NAME

        return self.record.get_meta("embedding_model") or DEFAULT_NAME

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Embed `texts` (touches nothing but the embedder, so it may run in another thread)."""
        vectors = np.asarray(self.embedder.encode(list(texts)), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise StoreError(f"the embedder returned shape {vectors.shape} for {len(texts)} texts")
        return vectors

    def _note_model(self) -> None:
        if not self.read_only and not self._model_recorded:
            if self.record.get_meta("embedding_model") != self.model_name:
                self.record.set_meta("embedding_model", self.model_name)
            self._model_recorded = True

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._encode(texts)
        self._note_model()
        return vectors

    # -- index consistency ----------------------------------------------------------------------
    def _load_indexes(self) -> None:
        version = self.record.version
        for kind in KINDS:
            try:
                index, manifest = retrieval.VectorIndex.load(self.root / VECTORS_DIR, kind)
                fresh = (
                    manifest.record_version == version
                    and manifest.extra.get("model") == self.model_name
                    and manifest.ids_sha256 == retrieval.ids_checksum(self.record.live_ids(kind))
                )
            except retrieval.IndexCorruptError:
                fresh = False
            if fresh:
                self._indexes[kind] = index
            else:
                self._rebuild_vectors(kind)
        stamp = graph.read_stamp(self.root / GRAPH_DIR / GRAPH_STAMP)
        graph_fresh = stamp is not None and stamp["record_version"] == version
        if self.read_only:
            if graph_fresh and (self.root / GRAPH_DIR / GRAPH_STORE).is_dir():
                self._triples = graph.TripleStore.open(self.root / GRAPH_DIR / GRAPH_STORE, read_only=True)
            else:
                self._triples = graph.TripleStore.open(None)
                self._fill_graph()
        else:
            self._triples = graph.TripleStore.open(self.root / GRAPH_DIR / GRAPH_STORE)
            if not graph_fresh:
                self._triples.clear()
                self._fill_graph()
                self.rebuilt.append("graph")
        self._synced_version = version
        self.flush()

    def _rebuild_vectors(self, kind: str) -> None:
        """Rebuild one vector index from the vectors stored in the record (embedding missing ones)."""
        missing = self.record.texts_without_vectors(kind, self.model_name)
        if missing and self.read_only:
            vectors = self._embed([t for _, t in missing])
        elif missing:
            vectors = self._embed([t for _, t in missing])
            self.record.put_vectors(kind, [i for i, _ in missing], vectors, self.model_name)
        index = None
        for ids, batch in self.record.iter_vectors(kind, self.model_name):
            if index is None:
                index = retrieval.VectorIndex(batch.shape[1], hnsw_threshold=self.hnsw_threshold)
            index.add(ids, batch)
        if missing and self.read_only:
            if index is None:
                index = retrieval.VectorIndex(vectors.shape[1], hnsw_threshold=self.hnsw_threshold)
            index.add([i for i, _ in missing], vectors)
        self._indexes[kind] = index or retrieval.VectorIndex(
            int(getattr(self._embedder, "dim", 384)), hnsw_threshold=self.hnsw_threshold
        )
        self.rebuilt.append(f"vectors:{kind}")

    def _fill_graph(self) -> None:
        assert self._triples is not None
        batch: list[tuple[str, str, str, str]] = []
        for fact in self.record.facts():
            batch.append((fact.subject, fact.relation, fact.object, fact.source))
            if len(batch) >= 20_000:
                self._triples.add(batch)
                batch = []
        self._triples.add(batch)

    def rebuild_indexes(self) -> list[str]:
        """Rebuild every derived index from the record now; returns what was rebuilt."""
        self._require_writable()
        with _translated():
            self.rebuilt = []
            for kind in KINDS:
                self._rebuild_vectors(kind)
            assert self._triples is not None
            self._triples.clear()
            self._fill_graph()
            self.rebuilt.append("graph")
            self._view = None
            self._linker = None
            self._synced_version = self.record.version
            self.flush()
        return list(self.rebuilt)

    def refresh(self) -> None:
        """For a read-only store: catch up with what a writer committed since open."""
        if self.record.version != self._synced_version:
            with _translated():
                if self._triples is not None:
                    self._triples.close()
                self._indexes, self._triples, self._view, self._linker = {}, None, None, None
                self._load_indexes()

    def _require_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.root} is open read-only")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Translate errors; mark indexes in sync only if the whole write went through."""
        self._require_writable()
        before = self.record.version
        in_sync = self._synced_version == before
        with _translated():
            yield
        if in_sync:
            self._synced_version = self.record.version

    # -- the multi-hop view and entity linker (built from the record on first use) ---------------
    @property
    def view(self) -> graph.MultiHopGraph:
        if self._view is None:
            view = graph.MultiHopGraph()
            for fact in self.record.facts(include_superseded=False, as_of=validation.now_timestamp()):
                view.add(fact.subject, fact.relation, fact.object, key=fact.id)
            self._view = view
        return self._view

    def _resync_view(self, pairs: Iterable[tuple[str, str]]) -> None:
        if self._view is None:
            return
        now = validation.now_timestamp()
        for subject, relation in set(pairs):
            for fact in self.record.facts(subject, relation, include_deleted=True):
                self._view.remove(fact.id)
            for fact in self.record.facts(subject, relation, as_of=now, include_superseded=False):
                self._view.add(fact.subject, fact.relation, fact.object, key=fact.id)

    @property
    def linker(self) -> graph.EntityLinker:
        if self._linker is None:
            linker = graph.EntityLinker(embed=self._embed)
            for fact in self.record.facts():
                linker.add(fact.subject)
                linker.add(fact.object)
            for alias, canonical in self.record.aliases():
                linker.add(canonical, [alias])
            self._linker = linker
        return self._linker

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
        return self.add_facts([NewFact(subject, relation, object, sentence, source, confidence, valid_from,
                                       valid_to, None if provenance is None else dict(provenance))])[0]

    def _prepare_facts(self, facts: Iterable[FactLike]) -> tuple[list, list[str], dict]:
        """Validate every fact, and look up the vectors of sentences already stored (same model)."""
        prepared = [self.record.prepare_fact(_as_new_fact(f)) for f in facts]
        sentences = [f.sentence for f in prepared]
        known = self.record.sentence_vectors(sentences, self.model_name) if prepared else {}
        return prepared, sentences, known

    def add_facts(self, facts: Iterable[FactLike]) -> list[Fact]:
        """Store many facts in one transaction (all or nothing), embedding them in one batch.

        A sentence already stored (same embedding model) reuses its vector, and a sentence repeated in
        `facts` is embedded once."""
        with self._writing():
            prepared, sentences, known = self._prepare_facts(facts)
            if not prepared:
                return []
            self._note_model()
            return self._write_facts(prepared, self._fact_vectors(sentences, known, set()))

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
            prepared, sentences, known = self._prepare_facts(facts)
            if not prepared:
                return []
            counts = Counter(sentences)
            repeated = {s for s, n in counts.items() if n > 1 and s not in known}
            self._note_model()
            starts = range(0, len(prepared), batch_size)
            stored: list[Fact] = []
            with ThreadPoolExecutor(1, thread_name_prefix="kedit-insert") as producer:
                pending = producer.submit(self._fact_vectors, sentences[:batch_size], known, repeated)
                for start in starts:
                    vectors = pending.result()
                    after = start + batch_size
                    if after < len(prepared):
                        pending = producer.submit(self._fact_vectors, sentences[after : after + batch_size],
                                                  known, repeated)
                    stored += self._write_facts(prepared[start:after], vectors)
            return stored

    def _fact_vectors(self, sentences: list[str], known: dict[str, np.ndarray], keep: set[str]) -> np.ndarray:
        """Vectors for `sentences`: from `known` (stored or embedded earlier), the rest embedded once each;
        those in `keep` (needed again by a later batch) are added to `known`."""
        missing = [s for s in dict.fromkeys(sentences) if s not in known]
        fresh = dict(zip(missing, self._encode(missing))) if missing else {}
        for sentence in keep & fresh.keys():
            known[sentence] = fresh[sentence]
        return np.stack([fresh[s] if s in fresh else known[s] for s in sentences]).astype(np.float32, copy=False)

    def _write_facts(self, prepared: list[NewFact], vectors: np.ndarray) -> list[Fact]:
        stored = self.record.add_facts(prepared, vectors, self.model_name, prepared=True)
        self._index_facts(stored, vectors)
        return stored

    def _index_facts(self, stored: Sequence[Fact], vectors: np.ndarray) -> None:
        self._indexes[FACT].add([f.id for f in stored], vectors)
        assert self._triples is not None
        self._triples.add((f.subject, f.relation, f.object, f.source) for f in stored)
        self._resync_view((f.subject, f.relation) for f in stored)
        if self._linker is not None:
            for fact in stored:
                self._linker.add(fact.subject)
                self._linker.add(fact.object)

    def _unlink_triple(self, fact: Fact) -> None:
        """Drop a fact's RDF statement unless another live fact states the same thing in that source."""
        twins = self.record.facts(fact.subject, fact.relation, fact.object)
        if not any(t.id != fact.id and t.source == fact.source for t in twins):
            assert self._triples is not None
            self._triples.remove(fact.subject, fact.relation, fact.object, fact.source)

    def update_fact(self, fact_id: int, **changes: Any) -> Fact:
        """Change fields of a fact in place (same id); the previous version stays in `revisions`."""
        with self._writing():
            old = self.record.get_fact(fact_id)
            preview = self.record.preview_update(fact_id, changes)
            vector = self._embed([preview.sentence])[0] if preview.sentence != old.sentence else None
            new = self.record.update_fact(fact_id, changes, vector, self.model_name)
            if vector is not None:
                self._indexes[FACT].add([fact_id], vector[None, :])
            self._unlink_triple(old)
            assert self._triples is not None
            self._triples.add([(new.subject, new.relation, new.object, new.source)])
            self._resync_view([(old.subject, old.relation), (new.subject, new.relation)])
        return new

    def delete_fact(self, fact_id: int) -> Fact:
        """Tombstone one fact: gone from search and graph, kept in `history`."""
        with _translated():
            fact = self.record.get_fact(fact_id)
        if fact.deleted:
            raise StoreNotFoundError(f"fact {fact_id} was already forgotten at {fact.deleted_at}")
        return self._tombstone([fact])[0]

    def forget(self, subject: str, relation: str | None = None, object: str | None = None) -> list[Fact]:
        """Tombstone every live fact matching the fields; returns them (empty when none matched)."""
        with _translated():
            subject = validation.clean_name(subject, "subject")
            relation_id = None if relation is None else self.record.relations.resolve(relation).id
            live = self.record.facts(subject, relation_id, object)
        return self._tombstone(live)

    def _tombstone(self, facts: Sequence[Fact]) -> list[Fact]:
        with self._writing():
            gone = self.record.tombstone_facts([f.id for f in facts])
            self._indexes[FACT].remove([f.id for f in gone])
            for fact in gone:
                self._unlink_triple(fact)
            self._resync_view((f.subject, f.relation) for f in gone)
            if gone:
                self._linker = None  # names only a forgotten fact held must not link any more: rebuilt on use
        return gone

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
        with _translated():
            return self.record.facts(subject, relation, object, as_of=as_of, include_deleted=include_deleted,
                                     include_superseded=include_superseded)

    def current(self, subject: str, relation: str, as_of: Any = None) -> Fact | None:
        """The fact in force for (subject, relation) at `as_of` (now): the newest valid one."""
        with _translated():
            return self.record.current(subject, relation, as_of)

    def history(self, subject: str | None = None, relation: str | None = None) -> list[Fact]:
        """Every fact ever stored for the filters (forgotten and superseded too), oldest first."""
        with _translated():
            return self.record.history(subject, relation)

    def fact(self, fact_id: int) -> Fact:
        with _translated():
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
            body = validation.clean_text(text, "document", validation.MAX_DOCUMENT_CHARS)
            chunks = split_passages(body, max_chars)
            vectors = self._embed(chunks)
            _, passages = self.record.add_document(
                chunks, source=source, title=title, valid_from=valid_from, valid_to=valid_to,
                provenance=provenance, vectors=vectors, model=self.model_name,
            )
            self._indexes[PASSAGE].add([p.id for p in passages], vectors)
        return passages

    def delete_document(self, document_id: int) -> list[Passage]:
        with self._writing():
            gone = self.record.delete_document(document_id)
            self._indexes[PASSAGE].remove([p.id for p in gone])
        return gone

    def passages(self, document_id: int | None = None) -> list[Passage]:
        return self.record.passages(document_id)

    def redact_passage(self, passage_id: int, text: str) -> Passage:
        """Replace a passage's text (e.g. with a sentence removed) and re-index it under the same id."""
        with self._writing():
            vector = self._embed([text])[0]
            passage = self.record.redact_passage(passage_id, text, vector, self.model_name)
            self._indexes[PASSAGE].add([passage.id], vector[None, :])
        return passage

    def delete_passages(self, passage_ids: Iterable[int]) -> list[Passage]:
        """Tombstone passages (their document too once none of its passages is left); returns them."""
        with self._writing():
            gone = self.record.tombstone_passages(passage_ids)
            self._indexes[PASSAGE].remove([p.id for p in gone])
        return gone

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
        with _translated():
            text = validation.clean_text(query, "query", validation.MAX_SENTENCE_CHARS)
            unknown = set(kinds) - set(KINDS)
            if unknown:
                raise StoreInputError(f"unknown kinds {sorted(unknown)}; use {KINDS}")
            when = validation.to_timestamp(as_of, "as_of") or validation.now_timestamp()
            vector = self._embed([text])[0]
            hits: list[Hit] = []
            for kind in kinds:
                hits += self._search_kind(kind, text, vector, k, when, include_superseded, lexical)
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def _search_kind(
        self, kind: str, text: str, vector: np.ndarray, k: int, when: str, include_superseded: bool, lexical: bool
    ) -> list[Hit]:
        index = self._indexes[kind]
        fetch = max(4 * k, 20)
        while True:
            found = index.search(vector, fetch)
            rows: Mapping[int, Fact | Passage] = (
                self.record.get_facts(i for i, _ in found) if kind == FACT
                else self.record.get_passages(i for i, _ in found)
            )
            live = {i: r for i, r in rows.items() if r.deleted_at is None and r.valid_at(when)}
            if kind == FACT and not include_superseded:
                current = self.record.current_among(list(live.values()), when)
                live = {i: r for i, r in live.items() if i in current}
            keep = [
                (item_id, score, live[item_id].sentence if kind == FACT else live[item_id].text)
                for item_id, score in found
                if item_id in live
            ]
            if len(keep) >= k or len(found) < fetch:
                break
            fetch *= 4
        ranked = retrieval.rerank(text, keep, self.lexical_weight if lexical else 0.0)
        hits = []
        for item_id, score in ranked[:k]:
            row = rows[item_id]
            if kind == FACT:
                hits.append(Hit(FACT, item_id, row.sentence, score, row.source, fact=row))
            else:
                hits.append(Hit(PASSAGE, item_id, row.text, score, row.source, passage=row))
        return hits

    # -- graph ----------------------------------------------------------------------------------
    def _facts_of(self, edges: Iterable[graph.Edge]) -> list[Fact]:
        edges = list(edges)
        rows = self.record.get_facts(e.key for e in edges)
        return [rows[e.key] for e in edges]

    def neighbours(self, entity: str, hops: int = 1) -> list[Fact]:
        """Current facts among entities within `hops` steps of `entity` (either direction)."""
        with _translated():
            return self._facts_of(self.view.neighbourhood(entity, hops))

    def chain(self, entity: str, relations: Sequence[str], as_of: Any = None) -> list[Fact]:
        """Follow `relations` from `entity` through the facts in force `as_of`; stops where one is missing."""
        if isinstance(relations, str):
            raise StoreInputError("relations must be a list of relation ids or labels, not one string")
        walk: list[Fact] = []
        here = entity
        with _translated():
            for relation in relations:
                fact = self.record.current(here, relation, as_of)
                if fact is None:
                    break
                walk.append(fact)
                here = fact.object
        return walk

    def path(self, a: str, b: str) -> list[Fact] | None:
        """The shortest chain of current facts linking entities `a` and `b`; None when unconnected."""
        with _translated():
            edges = self.view.path(a, b)
        return None if edges is None else self._facts_of(edges)

    def sparql(self, query: str, bindings: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
        """SELECT over the RDF graph; values go in `bindings` (use `graph.entity_iri(name)` for entities)."""
        with _translated():
            assert self._triples is not None
            return self._triples.query(query, bindings)

    def link_entity(self, text: str) -> str | None:
        """The canonical entity name `text` refers to (names, aliases, then embedding similarity)."""
        with _translated():
            text = validation.clean_name(text, "entity text")
        return self.linker.link(text)

    def add_aliases(self, canonical: str, aliases: Iterable[str]) -> None:
        aliases = list(aliases)
        with self._writing():
            self.record.add_aliases(canonical, aliases)
        if self._linker is not None:
            self._linker.add(canonical, aliases)

    # -- vocabulary, ledger, evidence sessions --------------------------------------------------
    @property
    def relations(self) -> memory.RelationVocabulary:
        return self.record.relations

    def register_relation(
        self,
        id: str,
        label: str,
        *,
        cloze: str,
        question: str,
        functional: bool = True,
        aliases: Sequence[str] = (),
        source: str = "custom",
    ) -> Relation:
        """Add a relation to the vocabulary (persisted); `source` says where it came from ("custom", "learned")."""
        with self._writing():
            relation = Relation(id, label, cloze, question, functional, tuple(aliases), source=source)
            return self.record.register_relation(relation)

    def record_edit(
        self,
        *,
        decision: str,
        reasons: Sequence[str] = (),
        fact_id: int | None = None,
        edit_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> EditEntry:
        """Write a ledger line linking a fact, a parametric edit record id, and the router's decision."""
        with self._writing():
            return self.record.record_edit(decision=decision, reasons=reasons, fact_id=fact_id, edit_id=edit_id,
                                           details=details)

    def redact_edit(self, entry_id: int, reasons: Sequence[str], details: Mapping[str, Any] | None) -> EditEntry:
        """Rewrite one ledger line's reasons and details (used by forgetting to scrub forgotten text)."""
        with self._writing():
            return self.record.redact_edit(entry_id, reasons, details)

    def edits(self, fact_id: int | None = None) -> list[EditEntry]:
        return self.record.edits(fact_id)

    @property
    def ledger(self) -> list[EditEntry]:
        return self.record.edits()

    def evidence_session(self, session_id: int) -> EvidenceSession:
        with _translated():
            return self.record.session(session_id)

    def evidence_sessions(self) -> list[EvidenceSession]:
        """Every saved evidence-pool session, oldest first."""
        with _translated():
            return [self.record.session(i) for i in self.record.session_ids()]

    def delete_evidence_sessions(self, session_ids: Iterable[int]) -> list[int]:
        """Erase saved evidence-pool sessions (with their rounds); returns the ids erased."""
        with self._writing():
            return self.record.delete_sessions(session_ids)

    # -- export / import ------------------------------------------------------------------------
    def export(self, path: str | Path, *, graph_format: str = "nt") -> Path:
        """Write `record.jsonl` (every row, history included) and `graph.<nt|ttl>` into directory `path`."""
        with _translated():
            out = Path(path)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / EXPORT_RECORD, "w", encoding="utf-8") as handle:
                for row in self.record.dump():
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            suffix = {"turtle": "ttl", "ttl": "ttl"}.get(graph_format, graph_format)
            assert self._triples is not None
            self._triples.export(out / f"graph.{suffix}", graph_format)
        return out

    def import_(self, path: str | Path, *, source: str = "import") -> list[Fact]:
        """Load an export directory or `record.jsonl`, or RDF statements (`.nt`, `.ttl`, `.nq`, `.trig`)
        as facts. Imported facts get new ids; forgotten ones are imported as forgotten."""
        path = Path(path)
        if path.is_dir():
            path = path / EXPORT_RECORD
        if not path.is_file():
            raise StoreNotFoundError(f"nothing to import at {path}")
        if path.suffix != ".jsonl":
            with _translated():
                quads = graph.read_triples(path, source=source)
            return self.add_facts(NewFact(s, r, o, source=src) for s, r, o, src in quads)
        rows = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise StoreInputError(f"{path.name} line {number} is not JSON: {exc}") from None
        return self._import_rows(rows)

    def _import_rows(self, rows: list[dict[str, Any]]) -> list[Fact]:
        fields = ("subject", "relation", "object", "sentence", "source", "confidence", "valid_from", "valid_to")
        for row in rows:
            if row.get("type") == "relation" and row["id"] not in self.relations:
                self.register_relation(row["id"], row["label"], cloze=row["cloze"], question=row["question"],
                                       functional=row.get("functional", True), aliases=row.get("aliases", ()),
                                       source=row.get("source", "custom"))
        for row in rows:
            if row.get("type") == "alias":
                self.add_aliases(row["canonical"], [row["alias"]])
        fact_rows = [r for r in rows if r.get("type") == "fact"]
        try:
            new_facts = [
                NewFact(**{f: r.get(f) for f in fields if f in r},
                        provenance=dict(r.get("provenance") or {}) | {"imported_id": r.get("id")})
                for r in fact_rows
            ]
        except TypeError as exc:
            raise StoreInputError(f"a fact row is malformed: {exc}") from None
        stored = self.add_facts(new_facts)
        id_map = {r.get("id"): f.id for r, f in zip(fact_rows, stored)}
        gone = [f for r, f in zip(fact_rows, stored) if r.get("deleted_at")]
        if gone:
            self._tombstone(gone)
        for row in rows:
            if row.get("type") == "document" and not row.get("deleted_at"):
                self.add_document("\n\n".join(row["passages"]), source=row["source"], title=row.get("title"),
                                  valid_from=row.get("valid_from"), valid_to=row.get("valid_to"),
                                  provenance=row.get("provenance"))
            elif row.get("type") == "edit":
                self.record_edit(decision=row["decision"], reasons=row.get("reasons", ()),
                                 fact_id=id_map.get(row.get("fact_id")), edit_id=row.get("edit_id"),
                                 details=row.get("details"))
        return stored

    # -- status ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "facts": self.record.count(FACT),
            "passages": self.record.count(PASSAGE),
            "record_version": self.record.version,
            "indexes": {k: {"kind": i.kind, "count": len(i)} for k, i in self._indexes.items()},
            "graph_statements": len(self._triples) if self._triples is not None else 0,
            "embedding_model": self.model_name,
        }


__all__ = ["Embedder", "FactLike", "KnowledgeStore"]
