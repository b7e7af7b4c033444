"""The stack of live weight changes (parametric edits and unlearning runs) of one knowledge layer.

Every change is kept as a record on disk (safetensors + JSON) and listed, in the order it was applied,
in `weights.json`. Reopening a layer re-applies the stack onto the freshly loaded model, bit-identically.
Undoing a change that is not the latest undoes the later ones (newest first, each bit-exact), removes it,
and re-applies the later ones as deltas: the result is the model as if that change had never been made
and the others had been made in the same order.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedit.errors import KeditError

EDIT = "edit"
UNLEARN = "unlearn"


@dataclass
class WeightChange:
    kind: str  # EDIT | UNLEARN
    id: str
    record: Any  # EditRecord | UnlearnRecord (for edits: the live record the editor returned)
    exact: bool = True  # False once re-applied as a delta onto other weights (undo is then a delta too)


class WeightStack:
    """Live weight changes of one model, persisted under `root` (`weights.json` + one dir per record)."""

    def __init__(self, root: Path, model_name: str, editor_factory, unlearner_factory) -> None:
        self.root = Path(root)
        self.model_name = model_name
        self._editor_factory = editor_factory
        self._unlearner_factory = unlearner_factory
        self._editor = None
        self._unlearner = None
        self.changes: list[WeightChange] = []

    # lazily built: opening a layer that never edits does not build editor caches
    @property
    def editor(self):
        if self._editor is None:
            self._editor = self._editor_factory()
        return self._editor

    @property
    def unlearner(self):
        if self._unlearner is None:
            self._unlearner = self._unlearner_factory()
        return self._unlearner

    @property
    def manifest(self) -> Path:
        return self.root / "weights.json"

    def _record_dir(self, change: WeightChange) -> Path:
        return self.root / ("edits" if change.kind == EDIT else "unlearn") / change.id

    def _write_manifest(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {"model": self.model_name, "live": [{"kind": c.kind, "id": c.id} for c in self.changes]}
        tmp = self.manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.manifest)  # atomic: a crash leaves the old or the new list, never half

    def load(self) -> list[WeightChange]:
        """Re-apply the persisted stack onto the (fresh) model."""
        if not self.manifest.is_file():
            return []
        data = json.loads(self.manifest.read_text())
        if data.get("live") and data.get("model") != self.model_name:
            raise KeditError(
                f"this knowledge base holds weight edits made on model {data.get('model')!r}; "
                f"open it with that model (not {self.model_name!r})"
            )
        from kedit.editing import EditRecord
        from kedit.unlearning import UnlearnRecord

        for item in data.get("live", []):
            change = WeightChange(item["kind"], item["id"], None)
            directory = self._record_dir(change)
            if change.kind == EDIT:
                change.record = self.editor.reapply(EditRecord.load(directory))
            else:
                change.record = UnlearnRecord.load(directory)
                self.unlearner.reapply(change.record)
            self.changes.append(change)
        return list(self.changes)

    def push(self, kind: str, record: Any) -> WeightChange:
        """Persist a change that has just been applied to the model."""
        change = WeightChange(kind, record.id, record)
        record.save(self._record_dir(change))
        self.changes.append(change)
        self._write_manifest()
        return change

    def find(self, change_id: str) -> WeightChange | None:
        return next((c for c in self.changes if c.id == change_id), None)

    def _undo_one(self, change: WeightChange) -> None:
        if change.kind == EDIT:
            self.editor.undo(change.record)  # restores the live record's pre-edit copy: exact
        else:
            self.unlearner.undo(change.record, strict=change.exact)

    def _reapply_one(self, change: WeightChange) -> None:
        if change.kind == EDIT:
            change.record = self.editor.reapply(change.record, strict=False)
        else:
            self.unlearner.reapply(change.record, strict=False)
            change.exact = False

    def remove(self, change_id: str) -> WeightChange:
        """Undo one change wherever it is in the stack (see the module docstring)."""
        change = self.find(change_id)
        if change is None:
            raise KeditError(f"no live weight change with id {change_id!r}")
        at = self.changes.index(change)
        later = self.changes[at + 1 :]
        # newest first, so each undo restores weights no other live change has touched since
        for other in reversed(later):
            self._undo_one(other)
        self._undo_one(change)
        for other in later:
            self._reapply_one(other)
        self.changes.pop(at)
        self._write_manifest()
        shutil.rmtree(self._record_dir(change), ignore_errors=True)
        return change

    @property
    def n_edits(self) -> int:
        return sum(1 for c in self.changes if c.kind == EDIT)
