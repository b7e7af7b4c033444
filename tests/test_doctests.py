"""The runnable docstring examples of the modules that need no model (the others are marked +SKIP)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "graph.entity_linker",
    "kedit.answers",
    "kedit.scope.text",
    "kedit.scope.head",
    "kedit.scope.relations",
    "kedit.scope.names",
    "kedit.scope.fuzzy",
    "kedit.scope.variants",
    "kedit.statements",
    "kedit.forgetting",
    "kedit.preference",
    "kedit.store.hit",
    "kedit.editing.registry",
    "kedit.editing.config",
    "kedit.editing.edit_info",
    "kedit.editing.value_buckets",
    "kedit.editing.woodbury",
    "kedit.runtime.copying",
    "memory.relations",
    "memory.record",
    "memory.rows",
    "memory.database",
    "memory.supersession",
    "benchmarks.runners.shards",
    "benchmarks.runners.pre_cache",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
