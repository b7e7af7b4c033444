"""Where kedit finds the shared benchmark data and text corpus."""

from __future__ import annotations

import os
from pathlib import Path

from kedit.errors import DataNotFoundError

_REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """`$KEDIT_DATA`, else `../shared/data` beside the repository (or the working directory) if it exists."""
    env = os.environ.get("KEDIT_DATA")
    if env:
        return Path(env).expanduser()
    for base in (_REPO_ROOT, Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def require_data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        raise DataNotFoundError(
            "benchmark data not found: set KEDIT_DATA or pass a path (looked for ../shared/data)"
        )
    return found
