"""The tail every scope study shares: print its summary and append it to a JSON-lines file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(summary: dict[str, Any], out: Path | None) -> None:
    """Print `summary` (indented) and, when `out` is given, append it to that file as one JSON line."""
    print(json.dumps(summary, indent=1))
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(summary) + "\n")
