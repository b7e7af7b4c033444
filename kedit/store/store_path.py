"""Where a store lives: a directory path, or a plain store name under a root directory.

>>> store_name_path("facts-2024", "/tmp/kb").name
'facts-2024'
"""

from __future__ import annotations

import re
from pathlib import Path

from kedit.store.errors import StorePathError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def store_dir(path: str | Path) -> Path:
    """`path` checked: text without NUL, no `..` component, not an existing file."""
    text = str(path)
    if not text.strip():
        raise StorePathError("store path is empty")
    if "\x00" in text:
        raise StorePathError("store path contains a NUL byte")
    candidate = Path(text).expanduser()
    if ".." in candidate.parts:
        raise StorePathError(f"store path {text[:200]!r} must not contain '..'")
    candidate = candidate.resolve()
    if candidate.exists() and not candidate.is_dir():
        raise StorePathError(f"store path {candidate} exists and is not a directory")
    return candidate


def store_name_path(name: str, root: str | Path) -> Path:
    """The directory of store `name` under `root`; a name is one path component of safe characters."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise StorePathError(
            f"store name {str(name)[:80]!r} must be 1-64 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit), with no path separators"
        )
    return store_dir(Path(root) / name)
