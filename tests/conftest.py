"""Shared fixtures: the real embedded model and embedder, loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm():
    """SmolLM2-135M (the default model), loaded from the safetensors cache after the first run.

    Tests that change weights must restore them (undo) before they end.
    """
    from kedit.runtime import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def embedder():
    from kedit.runtime import default_embedder

    return default_embedder()


@pytest.fixture(scope="session")
def data_dir():
    """The sample of real benchmark records kept in the repository (tests/data, see its SOURCES.md).

    Always the sample, never the full data beside the checkout: tests see the same records in every clone.
    """
    return DATA_DIR


@pytest.fixture(scope="module")
def pristine(smollm):
    """The model's weights as a module's tests found them (they must leave them so)."""
    from model_weights import snapshot

    return snapshot(smollm)


@pytest.fixture(scope="module")
def editor(smollm):
    """A `ParametricEditor` on the shared model; edits a module leaves live are undone after it."""
    from kedit.editing import ParametricEditor

    ed = ParametricEditor(smollm)
    yield ed
    for rec in reversed(list(ed.live)):
        ed.undo(rec)


@pytest.fixture()
def kl(tmp_path, smollm, pristine, embedder):
    """A knowledge layer in a fresh directory on the shared model; its weight changes are taken back after
    the test, and the model must then equal the pristine one."""
    from model_weights import unchanged

    from kedit import KnowledgeLayer

    layer = KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder)
    yield layer
    for change in reversed(list(layer.weights.changes)):
        layer.weights.remove(change.id)
    layer.close()
    assert unchanged(smollm, pristine)
