"""Pre-edit scores kept across methods and runs: a small SQLite file keyed by model + record hash + probe.

Every method scores a KnowEdit record on the *unedited* model before its edit (locality compares with these
argmax tokens; `pre_*` reports them), so the scores depend only on the model and the record's probes, never
on the method. `PreScoreCache` stores them as JSON text (token ids, accuracy, log-probability): no pickle,
nothing executable. The model key names the checkpoint, its dtype and device type, torch / transformers
versions and a fingerprint of the weights (a strided sample and the sum of every parameter), so a fine-tuned
or edited model never reads another's entries.

>>> cache = PreScoreCache(":memory:")
>>> from kedit.scoring import TargetScore
>>> s = TargetScore(1.0, -0.25, 2, (5, 7), (5, 7), 0)
>>> cache.put("m", "r", [s]); cache.get("m", "r", 1) == [s]
True
>>> cache.get("m", "other", 1) is None
True
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import torch

from kedit.errors import KeditError
from kedit.scoring import TargetScore


class PreCacheError(KeditError):
    """The pre-edit score cache cannot be opened or holds an unreadable entry."""


def default_cache_path() -> Path:
    """`$KEDIT_BENCH_CACHE`, else `$XDG_CACHE_HOME/kedit/bench-pre.sqlite` (default `~/.cache/...`)."""
    import os

    if os.environ.get("KEDIT_BENCH_CACHE"):
        return Path(os.environ["KEDIT_BENCH_CACHE"])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "kedit" / "bench-pre.sqlite"


@torch.no_grad()
def model_key(bundle) -> str:
    """Identity of the model as it is now: name, dtype, device type, library versions, weights fingerprint.
    Call it on the unedited model (a run takes it once, before any edit)."""
    import transformers

    h = hashlib.sha256()
    for name, p in bundle.model.named_parameters():
        flat = p.detach().reshape(-1)
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}:".encode())
        h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
        h.update(repr(float(flat.double().sum())).encode())
    p0 = next(bundle.model.parameters())
    parts = [
        str(getattr(bundle, "name", "")),
        str(p0.dtype),
        p0.device.type,
        f"torch {torch.__version__}",
        f"transformers {transformers.__version__}",
        h.hexdigest()[:32],
    ]
    return " | ".join(parts)


def record_hash(probes: Sequence[tuple[str, str, str, str]]) -> str:
    """Hash of a record's probes (section, key, prompt, target), in order."""
    return hashlib.sha256(json.dumps(list(probes), ensure_ascii=False).encode()).hexdigest()


def _to_json(s: TargetScore) -> list:
    return [s.accuracy, s.logprob, s.n_tokens, list(s.predicted), list(s.target), s.first_token_rank]


def _from_json(v: list) -> TargetScore:
    return TargetScore(
        float(v[0]),
        float(v[1]),
        int(v[2]),
        tuple(int(x) for x in v[3]),
        tuple(int(x) for x in v[4]),
        int(v[5]),
    )


class PreScoreCache:
    """SQLite table (model, record, probe index) -> score JSON. Safe for several processes (shards)
    writing the same file: each write is one short transaction and readers wait on a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=60)
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS pre (model TEXT, record TEXT, probe INTEGER, score TEXT, "
                "PRIMARY KEY (model, record, probe))"
            )
            self.db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise PreCacheError(f"cannot open the pre-edit score cache {path}: {exc}") from None

    def get(self, model: str, record: str, n: int) -> list[TargetScore] | None:
        """The record's `n` probe scores, or None unless every one is stored."""
        rows = self.db.execute(
            "SELECT probe, score FROM pre WHERE model = ? AND record = ? ORDER BY probe", (model, record)
        ).fetchall()
        if [r[0] for r in rows] != list(range(n)):
            return None
        try:
            return [_from_json(json.loads(r[1])) for r in rows]
        except (ValueError, TypeError, IndexError) as exc:
            raise PreCacheError(
                f"unreadable entry in {self.path} ({exc}); delete the file to rebuild it"
            ) from None

    def put(self, model: str, record: str, scores: Sequence[TargetScore]) -> None:
        try:
            with self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO pre VALUES (?, ?, ?, ?)",
                    [(model, record, i, json.dumps(_to_json(s))) for i, s in enumerate(scores)],
                )
        except sqlite3.Error as exc:
            raise PreCacheError(f"cannot write the pre-edit score cache {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()
