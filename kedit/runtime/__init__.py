"""Model runtime: loading models (embedded, HF directory, GGUF), architecture specs, embeddings."""

from kedit.runtime.deltas import Dense, LowRank, Rows, WeightDelta, fingerprint
from kedit.runtime.embeddings import SentenceEmbedder, default_embedder
from kedit.runtime.history import WeightHistory
from kedit.runtime.loader import ModelBundle, clear_model_cache, configure_threads, load_model, wrap_model
from kedit.runtime.sources import DEFAULT_MODEL, EMBEDDED, cache_root, install_command, is_installed
from kedit.runtime.spec import SPECS, ArchSpec, spec_for

__all__ = [
    "ArchSpec",
    "Dense",
    "LowRank",
    "Rows",
    "WeightDelta",
    "WeightHistory",
    "fingerprint",
    "wrap_model",
    "DEFAULT_MODEL",
    "EMBEDDED",
    "ModelBundle",
    "SPECS",
    "SentenceEmbedder",
    "cache_root",
    "clear_model_cache",
    "configure_threads",
    "default_embedder",
    "install_command",
    "is_installed",
    "load_model",
    "spec_for",
]
