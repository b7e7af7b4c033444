"""retrieval: FAISS index with stable ids (exact, then HNSW), persistence, lexical re-ranking."""

from __future__ import annotations

import numpy as np
import pytest

from kedit.store.datasets import counterfact_cases
from retrieval import FLAT, HNSW, IndexCorruptError, VectorIndex, VectorInputError, ids_checksum, rerank


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 centres (closer to real embeddings than uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim))
    vectors = centres[rng.integers(0, 50, n)] + 0.6 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_exact_index_keeps_ids_through_deletes_and_updates():
    vectors = clustered(300)
    index = VectorIndex(64)
    index.add(np.arange(300) * 10 + 7, vectors)
    assert index.kind == FLAT and len(index) == 300
    assert index.search(vectors[42], 1)[0][0] == 427
    index.remove([427])
    assert 427 not in [i for i, _ in index.search(vectors[42], 5)]
    index.add([17], vectors[42:43])  # update: id 17 now holds vector 42
    assert index.search(vectors[42], 1)[0][0] == 17 and len(index) == 299
    assert ids_checksum(index.ids()) == ids_checksum([i * 10 + 7 for i in range(300) if i != 42])


def test_hnsw_past_threshold_has_high_recall_and_masks_deletes():
    vectors = clustered(4000)
    exact = VectorIndex(64)
    exact.add(np.arange(4000), vectors)
    approx = VectorIndex(64, hnsw_threshold=1000)
    approx.add(np.arange(4000), vectors)
    assert approx.kind == HNSW
    queries = clustered(200, seed=1)
    truth = [{i for i, _ in row} for row in exact.search_many(queries, 5)]
    found = [{i for i, _ in row} for row in approx.search_many(queries, 5)]
    recall = np.mean([len(t & f) / 5 for t, f in zip(truth, found)])
    assert recall >= 0.95, recall
    top = approx.search(vectors[5], 1)[0][0]
    approx.remove([top])
    assert top not in [i for i, _ in approx.search(vectors[5], 10)]
    approx.add([3], vectors[5:6])  # replaced vector goes to the delta index
    assert approx.search(vectors[5], 1)[0][0] == 3
    assert len(approx) == 3999
    approx.remove(np.arange(100, 1000))  # past the compaction fraction: the graph is rebuilt
    assert approx._main.ntotal == len(approx) == 3099 and not approx._dead


@pytest.mark.parametrize("kind_threshold", [10_000, 100])
def test_save_load_and_corruption_is_detected(tmp_path, kind_threshold):
    vectors = clustered(500)
    index = VectorIndex(64, hnsw_threshold=kind_threshold)
    index.add(np.arange(500), vectors)
    index.remove([1, 2])
    index.add([3], vectors[4:5])
    index.save(tmp_path, "facts", record_version=9, extra={"model": "m"})
    loaded, manifest = VectorIndex.load(tmp_path, "facts")
    assert manifest.record_version == 9 and manifest.count == 498 and manifest.extra == {"model": "m"}
    assert loaded.kind == index.kind and loaded.search(vectors[4], 1)[0][0] in (3, 4)
    assert ids_checksum(loaded.ids()) == ids_checksum(index.ids())
    raw = bytearray((tmp_path / "facts.faiss").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "facts.faiss").write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="checksum"):
        VectorIndex.load(tmp_path, "facts")
    (tmp_path / "facts.faiss").unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        VectorIndex.load(tmp_path, "facts")
    (tmp_path / "facts.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="unreadable"):
        VectorIndex.load(tmp_path, "facts")


def test_bad_vectors_are_refused_without_changing_the_index():
    index = VectorIndex(8)
    index.add([1], np.ones((1, 8)))
    with pytest.raises(VectorInputError, match="dim 8"):
        index.add([2], np.ones((1, 9)))
    with pytest.raises(VectorInputError, match="NaN"):
        index.add([2], np.full((1, 8), np.nan))
    with pytest.raises(VectorInputError, match="repeat"):
        index.add([2, 2], np.ones((2, 8)))
    assert len(index) == 1 and index.ids().tolist() == [1]


def test_lexical_rerank_prefers_shared_names_and_numbers():
    candidates = [(1, 0.61, "Yoko Ono plays the piano."), (2, 0.58, "Toko Yasuda plays the guitar.")]
    assert [i for i, _ in rerank("What does Toko Yasuda play?", candidates)] == [2, 1]
    assert [i for i, _ in rerank("What does Toko Yasuda play?", candidates, weight=0.0)] == [1, 2]
    years = [(1, 0.70, "Croatia joined the EU in 2013."), (2, 0.72, "Croatia joined NATO in 2009.")]
    assert rerank("What happened to Croatia in 2013?", years)[0][0] == 1


def test_counterfact_paraphrases_find_their_facts(embedder, data_dir):
    cases = counterfact_cases(data_dir / "CounterFact" / "counterfact-val.json", limit=200)
    index = VectorIndex(embedder.dim)
    index.add([c.case_id for c in cases], embedder.encode([c.fact.sentence for c in cases]))
    texts = {c.case_id: c.fact.sentence for c in cases}
    queries = embedder.encode([c.rephrase for c in cases])
    hits = 0
    for case, query in zip(cases, queries):
        found = index.search(query, 20)
        ranked = rerank(case.rephrase, [(i, s, texts[i]) for i, s in found])
        hits += case.case_id in [i for i, _ in ranked[:5]]
    assert hits / len(cases) >= 0.95, hits / len(cases)
