"""The JSON manifest saved beside a FAISS index file: what it holds and from which record version.

>>> ids_checksum([3, 1, 2]) == ids_checksum([1, 2, 3])
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import IndexCorruptError

MANIFEST_FORMAT = 1


def ids_checksum(ids: Iterable[int] | np.ndarray) -> str:
    """sha256 of the sorted int64 ids (order-free identity of an index's contents)."""
    array = np.sort(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64))
    return hashlib.sha256(array.tobytes()).hexdigest()


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class IndexManifest:
    """`record_version` is the caller's version of the data the index was built from."""

    name: str
    dim: int
    kind: str
    count: int
    ids_sha256: str
    record_version: int
    files: dict[str, str]
    dead_ids: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> IndexManifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            manifest = cls(**data)
        except FileNotFoundError:
            raise IndexCorruptError(f"index manifest {path} is missing") from None
        except (OSError, ValueError, TypeError) as exc:
            raise IndexCorruptError(f"index manifest {path} is unreadable: {exc}") from None
        if manifest.format != MANIFEST_FORMAT:
            raise IndexCorruptError(
                f"index manifest {path} has format {manifest.format}, not {MANIFEST_FORMAT}"
            )
        return manifest
