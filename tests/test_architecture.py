"""The house's shape: no import cycle among the project's modules, no source file over the size limit.

import-linter (run by `make lint`) checks that each floor and room imports only those below it; it does
not see a cycle inside one room (kedit.editing.editor <-> kedit.editing.registry was one, through a
type-checking import). grimp, the graph import-linter itself builds, finds them here.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kedit", "memory", "retrieval", "graph", "benchmarks")
MAX_LINES = 400  # docs/architecture.md: a file over this mixes jobs


def test_no_import_cycle_among_modules():
    graph = grimp.build_graph(*PACKAGES)  # type-checking imports included: a cycle there is one too
    imports = nx.DiGraph(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
    )
    cycles = [sorted(c) for c in nx.strongly_connected_components(imports) if len(c) > 1]
    assert cycles == []


def test_no_source_file_over_the_limit():
    long = {
        str(path.relative_to(ROOT)): n
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
