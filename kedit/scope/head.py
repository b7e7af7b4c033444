"""The scope head: does a subject-masked input ask for the relation a subject-masked template expresses?

A logistic regression over SBERT's pair features of the two MiniLM vectors, [q*t, |q-t|, q.t], fitted
by `python -m benchmarks.scope_calibrate` on counterfact-train and zsRE-MEND train (never on the
validation files it is reported on). Its weights, threshold and the run's figures are in
`scope_head.json` beside this file (JSON, not a pickle).

>>> import numpy as np
>>> pair_features(np.ones((1, 2)), np.zeros((1, 2))).tolist()
[[0.0, 0.0, 1.0, 1.0, 0.0]]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

HEAD_PATH = Path(__file__).with_name("scope_head.json")


def pair_features(queries: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """[q*t, |q-t|, q.t] for row-aligned unit vectors (n, d) -> (n, 2d + 1)."""
    queries, templates = np.atleast_2d(queries), np.atleast_2d(templates)
    return np.concatenate([queries * templates, np.abs(queries - templates),
                           (queries * templates).sum(axis=1, keepdims=True)], axis=1)


@dataclass(frozen=True)
class ScopeHead:
    weights: np.ndarray = field(repr=False)
    bias: float
    threshold: float  # in logit units: a pair scoring at least this is in scope
    join_similarity: float
    meta: dict = field(default_factory=dict, repr=False, compare=False)

    def logits(self, query: np.ndarray, templates: np.ndarray) -> np.ndarray:
        """One logit per template row for one query vector."""
        rows = np.repeat(np.atleast_2d(query), len(templates), axis=0)
        return pair_features(rows, templates) @ self.weights + self.bias

    @classmethod
    def load(cls, path: str | Path = HEAD_PATH) -> ScopeHead:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != 1:
            raise ValueError(f"{path}: unknown scope head format {data.get('format')!r}")
        return cls(np.asarray(data["weights"], dtype=np.float32), float(data["bias"]), float(data["threshold"]),
                   float(data["join_similarity"]), {k: data[k] for k in ("fitted_on", "train") if k in data})


@lru_cache(maxsize=1)
def default_head() -> ScopeHead:
    return ScopeHead.load()
