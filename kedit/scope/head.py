"""The scope head: does a subject-masked input ask for the relation a subject-masked template expresses?

A small multilayer perceptron (one ReLU hidden layer) over SBERT's pair features of the two MiniLM
vectors, [q*t, |q-t|, q.t], and three word-overlap features of the two texts (`word_features`), fitted by `python -m
benchmarks.studies.scope_calibrate` on counterfact-train and zsRE-MEND train (never on the validation files it
is reported on). Its weights, threshold and the run's figures are in `scope_head.json` beside this file
(JSON, not a pickle).

>>> import numpy as np
>>> pair_features(np.ones((1, 2)), np.zeros((1, 2))).tolist()
[[0.0, 0.0, 1.0, 1.0, 0.0]]
>>> word_features("X occupation", "What was X's occupation?")
[1.0, 1.0, 0.0]
>>> word_features("The head coach of X is", "For which sports team does X play?")
[0.0, 0.0, 1.0]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

HEAD_PATH = Path(__file__).with_name("scope_head.json")
FORMAT = 2
N_WORD_FEATURES = 3

_TOKEN = re.compile(r"[a-z0-9]+")
# words that carry no relation: question words, auxiliaries, articles, prepositions, the placeholder
_FUNCTION_WORDS = frozenset(
    "x s a an the of in on at to for from by with into onto as and or is are was were be been being has have had "
    "do does did done what which who whom whose where when why how that this these those it its name named called "
    "there their they he she his her him one ones some any can could will would shall should may might must "
    "than then also about over under up out off after before during per via whats who's".split()
)


@lru_cache(maxsize=65536)
def content_stems(text: str) -> frozenset[str]:
    """The words of `text` that can name a relation, cut to a five-letter stem ("located" = "location")."""
    return frozenset(w[:5] for w in _TOKEN.findall(text.casefold()) if w not in _FUNCTION_WORDS)


def word_features(query: str, template: str) -> list[float]:
    """[Jaccard of the content stems, any shared stem, share of the query's stems the template lacks].

    An input that names a relation word the template does not ("X head coach" against "For which sports
    team does X play?") is asking for something else; the sentence vectors alone blur that on short text.
    """
    q, t = content_stems(query), content_stems(template)
    union = q | t
    shared = len(q & t)
    return [shared / len(union) if union else 1.0, float(shared > 0), (len(q - t) / len(q)) if q else 0.0]


def pair_features(queries: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """[q*t, |q-t|, q.t] for row-aligned unit vectors (n, d) -> (n, 2d + 1)."""
    queries, templates = np.atleast_2d(queries), np.atleast_2d(templates)
    return np.concatenate(
        [queries * templates, np.abs(queries - templates), (queries * templates).sum(axis=1, keepdims=True)],
        axis=1,
    )


def head_features(
    queries: np.ndarray, templates: np.ndarray, query_texts: list[str], template_texts: list[str]
) -> np.ndarray:
    """The head's input for row-aligned pairs: the vector pair features, then the word features."""
    words = np.asarray([word_features(q, t) for q, t in zip(query_texts, template_texts)], dtype=np.float32)
    return np.concatenate([pair_features(queries, templates), words.reshape(-1, N_WORD_FEATURES)], axis=1)


@dataclass(frozen=True)
class ScopeHead:
    """Dense layers (weights (n_in, n_out), bias (n_out,)), ReLU between them, one logit out."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...] = field(repr=False)
    threshold: float  # in logit units: a pair scoring at least this is in scope
    join_similarity: float
    meta: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.layers or self.layers[-1][0].shape[1] != 1:
            raise ValueError("a scope head ends in one output (a logit)")

    def score(self, features: np.ndarray) -> np.ndarray:
        """One logit per row of `head_features`."""
        h = np.asarray(features, dtype=np.float32)
        for i, (weights, bias) in enumerate(self.layers):
            h = h @ weights + bias
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def logits(
        self, query: np.ndarray, query_text: str, templates: np.ndarray, template_texts: list[str]
    ) -> np.ndarray:
        """One logit per template row for one query (its unit vector and its masked text)."""
        rows = np.repeat(np.atleast_2d(query), len(templates), axis=0)
        return self.score(head_features(rows, templates, [query_text] * len(templates), template_texts))

    @classmethod
    def load(cls, path: str | Path = HEAD_PATH) -> ScopeHead:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: unknown scope head format {data.get('format')!r}")
        layers = tuple(
            (np.asarray(layer["weights"], dtype=np.float32), np.asarray(layer["bias"], dtype=np.float32))
            for layer in data["layers"]
        )
        return cls(
            layers,
            float(data["threshold"]),
            float(data["join_similarity"]),
            {k: data[k] for k in ("fitted_on", "train", "held_out") if k in data},
        )


@lru_cache(maxsize=1)
def default_head() -> ScopeHead:
    return ScopeHead.load()
