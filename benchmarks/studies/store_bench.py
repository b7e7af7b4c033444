"""Knowledge-store benchmark: insert rate, paraphrase recall@5, dense search p50 and open time at scale.

    .venv/bin/python -m benchmarks.studies.store_bench                    # all figures (several minutes on 2 cores)
    .venv/bin/python -m benchmarks.studies.store_bench --scale 20000 --insert 1000 --recall 3000   # quicker

1. insert: CounterFact facts through `KnowledgeStore.add_facts` in batches, real MiniLM (embedding-bound).
2. recall@5: every recognised CounterFact fact (train + val) in one store; each case's rephrase prompt
   must find its own fact in the top 5 of `search`.
3. scale: `--scale` facts with synthetic unit vectors (a deterministic random embedder), so the index
   turns HNSW past its threshold; search p50 (index only, and the whole `search` call), HNSW recall@5
   against exact search, then the open time of that store when nothing needs rebuilding.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from kedit.paths import require_data_dir
from kedit.runtime.embeddings import default_embedder
from kedit.store import KnowledgeStore, NewFact
from kedit.store.datasets import counterfact_cases
from retrieval import VectorIndex


class SyntheticEmbedder:
    """Unit vectors seeded by the text's CRC32 (the same text always gets the same vector), drawn from a
    48-dimensional subspace plus noise: sentence embeddings have a low intrinsic dimension, and i.i.d.
    Gaussian vectors (where every neighbour beyond the first is a near-tie) would measure nothing."""

    name = "synthetic-384"
    dim = 384
    rank = 48

    def __init__(self) -> None:
        self.basis = np.random.default_rng(0).standard_normal((self.rank, self.dim)).astype(np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            out[row] = rng.standard_normal(self.rank) @ self.basis + 0.5 * rng.standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def bench_insert(cases, root: Path, n: int, batch: int) -> None:
    """Plain `add_facts` per batch, the pipelined `add_facts_in_batches`, and embedding alone (the store's
    embedder, and sentence-transformers' own `encode` as it was used before) on the same facts, same run."""
    embedder = default_embedder()
    facts = [c.fact for c in cases[:n]]
    sentences = [f.sentence for f in facts]
    embedder.encode(sentences[:64])
    embedder.model.encode(sentences[:64], batch_size=32)

    def embed_alone() -> float:
        start = time.perf_counter()
        embedder.encode(sentences)
        return len(facts) / (time.perf_counter() - start)

    before = embed_alone()
    with KnowledgeStore.open(root / "plain", embedder) as store:
        start = time.perf_counter()
        plain_ids = [
            f.id
            for first in range(0, len(facts), batch)
            for f in store.add_facts(facts[first : first + batch])
        ]
        plain = len(facts) / (time.perf_counter() - start)
    with KnowledgeStore.open(root / "pipelined", embedder) as store:
        start = time.perf_counter()
        piped_ids = [f.id for f in store.add_facts_in_batches(facts, batch)]
        piped = len(facts) / (time.perf_counter() - start)
    after = embed_alone()
    start = time.perf_counter()
    embedder.model.encode(sentences, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    st_rate = len(facts) / (time.perf_counter() - start)
    assert piped_ids == plain_ids
    embed = max(before, after)
    print(
        f"insert (MiniLM, {len(facts)} CounterFact facts, batches of {batch}): {piped:,.0f} facts/s pipelined "
        f"(add_facts_in_batches), {plain:,.0f} facts/s plain add_facts per batch"
    )
    print(
        f"embedding alone, same texts: {embed:,.0f} texts/s (the store's embedder, {embedder.backend} backend: "
        f"{embedder.workers} batches at once, 1 thread each; runs {before:,.0f} and {after:,.0f}); sentence-transformers encode "
        f"(batch 32, {torch.get_num_threads()} intra-op threads) {st_rate:,.0f} texts/s"
    )
    print(f"insert / embedding throughput: {piped / embed:.2f} pipelined, {plain / embed:.2f} plain")


def bench_recall(cases, root: Path, n: int | None) -> None:
    embedder = default_embedder()
    chosen = cases if n is None else cases[:n]
    with KnowledgeStore.open(root, embedder) as store:
        stored = store.add_facts_in_batches([c.fact for c in chosen])
        hits = 0
        for case, fact in zip(chosen, stored):
            found = store.search(case.rephrase, k=5, kinds=("fact",))
            hits += fact.id in [h.id for h in found]
    print(
        f"paraphrase recall@5 (CounterFact rephrase prompts vs their facts): {hits / len(chosen):.3f} "
        f"over {len(chosen)} facts"
    )


def bench_scale(root: Path, n: int, batch: int, queries: int = 300) -> None:
    embedder = SyntheticEmbedder()
    start = time.perf_counter()
    with KnowledgeStore.open(root, embedder) as store:
        for first in range(0, n, batch):
            store.add_facts(
                NewFact(
                    f"Entity {i}",
                    "P131",
                    f"Place {i % 997}",
                    sentence=f"Synthetic fact number {i}.",
                    source="synthetic",
                )
                for i in range(first, min(n, first + batch))
            )
        build = time.perf_counter() - start
        index = store._indexes["fact"]
        rng = np.random.default_rng(7)
        picks = rng.integers(0, n, queries)
        texts = [f"Synthetic fact number {i}." for i in picks]
        vectors = embedder.encode(texts) + 0.02 * rng.standard_normal((queries, embedder.dim)).astype(
            np.float32
        )
        index_ms, search_ms = [], []
        for vector, text in zip(vectors, texts):
            t0 = time.perf_counter()
            index.search(vector, 5)
            index_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            store.search(text, k=5, kinds=("fact",))
            search_ms.append((time.perf_counter() - t0) * 1000)
        exact = VectorIndex(embedder.dim, hnsw_threshold=n + 1)
        exact.add(index.ids(), index._main.index.reconstruct_n(0, index._main.ntotal))
        truth = exact.search_many(vectors, 5)
        found = index.search_many(vectors, 5)
        recall = np.mean([len({i for i, _ in t} & {i for i, _ in f}) / 5 for t, f in zip(truth, found)])
        kind = index.kind
    print(
        f"scale: {n:,} synthetic facts stored in {build:.1f} s ({n / build:,.0f} facts/s without embedding); "
        f"index {kind}"
    )
    print(
        f"dense search p50 at {n:,}: index {statistics.median(index_ms):.2f} ms, whole search() "
        f"{statistics.median(search_ms):.2f} ms; HNSW recall@5 vs exact {recall:.3f}"
    )
    start = time.perf_counter()
    store = KnowledgeStore.open(root, embedder)
    opened = time.perf_counter() - start
    rebuilt = store.rebuilt
    store.close()
    print(f"open of a {n:,}-fact store: {opened:.2f} s (rebuilt: {rebuilt or 'nothing'})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="shared data directory (default ../shared/data)"
    )
    parser.add_argument("--insert", type=int, default=2000, help="facts for the insert-rate run")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--recall", type=int, default=None, help="facts for recall@5 (default: all)")
    parser.add_argument("--scale", type=int, default=100_000, help="synthetic facts for p50/open")
    parser.add_argument("--skip", nargs="*", default=[], choices=["insert", "recall", "scale"])
    args = parser.parse_args()
    data = args.data or require_data_dir()
    files = [data / "CounterFact" / "counterfact-train.json", data / "CounterFact" / "counterfact-val.json"]
    cases = [c for path in files for c in counterfact_cases(path)]
    print(f"data: {', '.join(str(f) for f in files)}: {len(cases)} facts with a recognised relation")
    work = Path(tempfile.mkdtemp(prefix="kedit-bench-"))
    try:
        if "insert" not in args.skip:
            bench_insert(cases, work / "insert", args.insert, args.batch)
        if "recall" not in args.skip:
            bench_recall(cases, work / "recall", args.recall)
        if "scale" not in args.skip:
            bench_scale(work / "scale", args.scale, batch=5000)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
