"""Edit records: what an edit changed, exactly, so that it can be undone bit-exact and re-applied.

A record holds the ordered weight deltas (each applied as `param += delta` in float32, so replaying
them on the same pre-edit weights reproduces the post-edit weights bit for bit), the pre-edit copy of
every changed matrix (undo restores it), the method and its config, the requests, timings and the
post-edit verification. `save(dir)` writes `tensors.safetensors` + `record.json`.

>>> import tempfile, torch
>>> rec = EditRecord.new("rome", {"layer": 4}, [], [("w", torch.ones(2, 2))], {"w": torch.zeros(2, 2)})
>>> d = tempfile.mkdtemp(); _ = rec.save(d); EditRecord.load(d).steps[0][0]
'w'
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

from kedit.editing.requests import EditRequest

FORMAT = 1


@dataclass
class EditRecord:
    id: str
    method: str
    config: dict[str, Any]
    requests: list[EditRequest]
    steps: list[tuple[str, torch.Tensor]]  # (state-dict name, delta), in application order
    pre: dict[str, torch.Tensor]  # pre-edit weights of every changed matrix
    timings: dict[str, float] = field(default_factory=dict)
    verification: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # model name, sadr, steps, null-space dims...
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. MEMIT/AlphaEdit edited keys
    created: float = field(default_factory=time.time)

    @classmethod
    def new(cls, method, config, requests, steps, pre, **kwargs) -> EditRecord:
        return cls(uuid.uuid4().hex[:12], method, config, list(requests), list(steps), dict(pre), **kwargs)

    @property
    def changed(self) -> list[str]:
        """Names of the changed matrices."""
        return sorted(self.pre)

    @property
    def success(self) -> bool:
        """Every request's target is the teacher-forced argmax after the edit."""
        return bool(self.verification) and all(v["after"]["accuracy"] == 1.0 for v in self.verification)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"step.{i}": d.contiguous() for i, (_, d) in enumerate(self.steps)}
        tensors.update({f"pre.{name}": w.contiguous() for name, w in self.pre.items()})
        tensors.update({f"extra.{k}": v.contiguous() for k, v in self.extra_tensors.items()})
        save_file(tensors, str(directory / "tensors.safetensors"))
        meta = {
            "format": FORMAT,
            "id": self.id,
            "method": self.method,
            "config": self.config,
            "requests": [r.to_dict() for r in self.requests],
            "steps": [name for name, _ in self.steps],
            "timings": self.timings,
            "verification": self.verification,
            "info": self.info,
            "created": self.created,
        }
        (directory / "record.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EditRecord:
        directory = Path(directory)
        meta = json.loads((directory / "record.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{directory}: unknown edit record format {meta.get('format')}")
        tensors = load_file(str(directory / "tensors.safetensors"))
        steps = [(name, tensors[f"step.{i}"]) for i, name in enumerate(meta["steps"])]
        pre = {k[4:]: v for k, v in tensors.items() if k.startswith("pre.")}
        extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
        return cls(
            id=meta["id"],
            method=meta["method"],
            config=meta["config"],
            requests=[EditRequest.from_dict(r) for r in meta["requests"]],
            steps=steps,
            pre=pre,
            timings=meta.get("timings", {}),
            verification=meta.get("verification", []),
            info=meta.get("info", {}),
            extra_tensors=extra,
            created=meta.get("created", 0.0),
        )
