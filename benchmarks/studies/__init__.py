"""Measurement scripts (one question each: a speed, a sweep, a quality check), run as

    kedit bench study NAME [ARGS]             # e.g. kedit bench study edit_speed --n 4
    python -m benchmarks.studies.NAME [ARGS]  # the same

`STUDIES` names them all; `describe` reads a study's first docstring line without importing it (a study
imports torch and the model code), `run` runs one as `python -m` would.

>>> "edit_quality" in STUDIES and describe("load_speed").startswith("Model load time")
True
"""

from __future__ import annotations

import ast
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from kedit.errors import KeditError

STUDIES = (
    "conflicts",
    "corpus_check",
    "edit_batch_speed",
    "edit_cases",
    "edit_covariance",
    "edit_footprint",
    "edit_nullspace",
    "edit_quality",
    "edit_speed",
    "edit_sweep",
    "forget_bench",
    "forget_sweep",
    "gpu_check",
    "harness_speed",
    "load_speed",
    "relation_bench",
    "router_bench",
    "scope_bench",
    "scope_calibrate",
    "scope_speed",
    "store_bench",
    "unlearn_bench",
)
# studies whose command line is a `kedit bench` sub-command of their own (typed options, written tables)
COMMAND_OF = {"forget_bench": "forget"}


class UnknownStudyError(KeditError):
    """`kedit bench study NAME` with a NAME that is not in `STUDIES`."""


def _check(name: str) -> None:
    if name not in STUDIES:
        raise UnknownStudyError(f"unknown study '{name}' (studies: {', '.join(STUDIES)})")


def describe(name: str) -> str:
    """The first line of study `name`'s docstring."""
    _check(name)
    source = (Path(__file__).parent / f"{name}.py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    return doc.split("\n", 1)[0]


def run(name: str, argv: Sequence[str]) -> None:
    """Run study `name` with `argv` as `python -m benchmarks.studies.NAME ARGV` would (its own argparse;
    a `SystemExit` it raises passes through)."""
    _check(name)
    module = f"{__name__}.{name}"
    saved = sys.argv
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.argv = saved
