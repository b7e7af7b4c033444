"""Edit records: what an edit changed, stored as what it is, so it can be undone and re-applied bit-exactly.

A record holds the ordered weight changes: ROME, MEMIT and AlphaEdit as low-rank factors (ΔW = U V, rank ≤
the requests of the batch), FT-L as the rows it changed; each is applied by `WeightDelta.apply`, so
replaying them onto the same weights reproduces the post-edit weights bit for bit. No pre-edit copy is
kept: undo rebuilds a matrix from the model's base weights (`kedit.runtime.history`); a fingerprint of
each matrix before the edit tells a strict re-apply whether it is being made on the same weights. Also
the method and its config, the requests, timings and the post-edit verification.
`save(dir)` writes `tensors.safetensors` + `record.json` (format 2); records of format 1 (dense deltas
plus pre-edit copies) still load, as dense changes.

>>> import tempfile, torch
>>> from kedit.runtime.deltas import LowRank
>>> rec = EditRecord.new("rome", {"layer": 4}, [], [("w", LowRank(torch.ones(2, 1), torch.ones(1, 2)))])
>>> d = tempfile.mkdtemp(); _ = rec.save(d); loaded = EditRecord.load(d)
>>> loaded.steps[0][0], loaded.delta("w").tolist()
('w', [[1.0, 1.0], [1.0, 1.0]])
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kedit.editing.edit_info import EditInfo
from kedit.editing.requests import EditRequest
from kedit.errors import EditError
from kedit.runtime.deltas import Dense, WeightDelta, fingerprint

FORMAT = 2
READABLE_FORMATS = (1, 2)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class EditRecord:
    id: str
    method: str
    config: dict[str, Any]
    requests: list[EditRequest]
    steps: list[tuple[str, WeightDelta]]  # (state-dict name, change), in application order
    fingerprints: dict[str, dict] = field(default_factory=dict)  # per changed matrix, before this edit
    timings: dict[str, float] = field(default_factory=dict)
    verification: list[dict[str, Any]] = field(default_factory=list)
    info: EditInfo = field(default_factory=EditInfo)  # model, sadr, value steps, null-space dims...
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. MEMIT/AlphaEdit edited keys
    created: float = field(default_factory=time.time)

    @classmethod
    def new(cls, method, config, requests, steps, fingerprints=None, **kwargs) -> EditRecord:
        return cls(new_id(), method, config, list(requests), list(steps), dict(fingerprints or {}), **kwargs)

    @property
    def changed(self) -> list[str]:
        """Names of the changed matrices."""
        return sorted({name for name, _ in self.steps})

    def delta(self, name: str) -> torch.Tensor:
        """The total change of matrix `name` as a dense float32 tensor (for analysis; not kept)."""
        ops = [op for n, op in self.steps if n == name]
        if not ops:
            raise KeyError(name)
        shape = tuple(self.fingerprints[name]["shape"]) if name in self.fingerprints else None
        total = ops[0].dense(shape)
        for op in ops[1:]:
            total = total + op.dense(shape)
        return total

    @property
    def nbytes(self) -> int:
        """Bytes of the weight changes and extra tensors this record holds."""
        extra = sum(t.numel() * t.element_size() for t in self.extra_tensors.values())
        return sum(op.nbytes for _, op in self.steps) + extra

    @property
    def success(self) -> bool:
        """Every request's target is the teacher-forced argmax after the edit."""
        return bool(self.verification) and all(v["after"]["accuracy"] == 1.0 for v in self.verification)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for i, (_, op) in enumerate(self.steps):
            tensors.update({f"step.{i}.{k}": t.detach().cpu().contiguous() for k, t in op.tensors().items()})
        tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in self.extra_tensors.items()})
        save_file(tensors, str(directory / "tensors.safetensors"))
        meta = {
            "format": FORMAT,
            "id": self.id,
            "method": self.method,
            "config": self.config,
            "requests": [r.to_dict() for r in self.requests],
            "steps": [{"name": name, "kind": op.kind} for name, op in self.steps],
            "fingerprints": self.fingerprints,
            "timings": self.timings,
            "verification": self.verification,
            "info": self.info.to_json(),
            "created": self.created,
        }
        (directory / "record.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EditRecord:
        directory = Path(directory)
        try:
            meta = json.loads((directory / "record.json").read_text())
            tensors = load_file(str(directory / "tensors.safetensors"))
        except (OSError, ValueError) as exc:
            raise EditError(f"{directory} does not hold a readable edit record: {exc}") from exc
        fmt = meta.get("format")
        if fmt not in READABLE_FORMATS:
            raise EditError(
                f"{directory}: unknown edit record format {fmt!r} (this kedit reads {READABLE_FORMATS})"
            )
        if fmt == 1:
            # dense deltas (each applied as param += delta in float32, as Dense does) + pre-edit copies,
            # of which only the fingerprints are kept
            steps: list[tuple[str, WeightDelta]] = [
                (name, Dense(tensors[f"step.{i}"])) for i, name in enumerate(meta["steps"])
            ]
            prints = {k[4:]: fingerprint(v) for k, v in tensors.items() if k.startswith("pre.")}
        else:
            steps = []  # (annotated in the format-1 branch)
            for i, step in enumerate(meta["steps"]):
                prefix = f"step.{i}."
                parts = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                steps.append((step["name"], WeightDelta.from_tensors(step["kind"], parts)))
            prints = meta.get("fingerprints", {})
        extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
        return cls(
            id=meta["id"],
            method=meta["method"],
            config=meta["config"],
            requests=[EditRequest.from_dict(r) for r in meta["requests"]],
            steps=steps,
            fingerprints=prints,
            timings=meta.get("timings", {}),
            verification=meta.get("verification", []),
            info=EditInfo.from_json(meta.get("info", {})),
            extra_tensors=extra,
            created=meta.get("created", 0.0),
        )
