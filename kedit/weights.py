"""The stack of live weight changes (parametric edits and unlearning runs) of one knowledge layer.

Every change is kept as a record on disk (safetensors + JSON: edits as low-rank factors or changed rows,
unlearning runs as dense deltas; no pre-edit copies) and listed, in the order it was applied, in
`weights.json`, with a fingerprint of the base weights of every matrix a live change touches. Reopening
checks those fingerprints against the freshly loaded model, then re-applies the stack in order.
Undoing any change, wherever it is, rebuilds its matrices from the base weights and re-applies the other
live changes in order (`ModelBundle.history`): the model as if that change had never been made, which
is exactly what a reopen rebuilds, so a knowledge base always reopens to the weights it had in memory.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedit.errors import KeditError
from kedit.runtime.deltas import fingerprint, fingerprint_mismatch

EDIT = "edit"
UNLEARN = "unlearn"
MANIFEST_FORMAT = 2


class WeightStackError(KeditError):
    """The weight changes of a knowledge base cannot be re-applied to this model (nothing was changed)."""


@dataclass
class WeightChange:
    kind: str  # EDIT | UNLEARN
    id: str
    record: Any  # EditRecord | UnlearnRecord (for edits: the live record the editor holds)

    @property
    def names(self) -> list[str]:
        if self.kind == EDIT:
            return self.record.changed
        return list(self.record.param_names)


class WeightStack:
    """Live weight changes of one model, persisted under `root` (`weights.json` + one dir per record)."""

    def __init__(self, root: Path, bundle, editor_factory, unlearner_factory) -> None:
        self.root = Path(root)
        self.bundle = bundle
        self.model_name = bundle.name
        self._editor_factory = editor_factory
        self._unlearner_factory = unlearner_factory
        self._editor = None
        self._unlearner = None
        self.changes: list[WeightChange] = []
        self._base: dict[str, dict] = {}  # fingerprint of the base of every matrix a live change touches

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
        data = {
            "format": MANIFEST_FORMAT,
            "model": self.model_name,
            "base": self._base,
            "live": [{"kind": c.kind, "id": c.id} for c in self.changes],
        }
        tmp = self.manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.manifest)  # atomic: a crash leaves the old or the new list, never half

    def load(self) -> list[WeightChange]:
        """Re-apply the persisted stack onto the (fresh) model; refused, changing nothing, if the model's
        weights are not the base the stack was made on."""
        if not self.manifest.is_file():
            return []
        data = json.loads(self.manifest.read_text())
        if data.get("live") and data.get("model") != self.model_name:
            raise WeightStackError(
                f"this knowledge base holds weight edits made on model {data.get('model')!r}; "
                f"open it with that model (not {self.model_name!r})"
            )
        from kedit.editing import EditRecord
        from kedit.unlearning import UnlearnRecord

        changes = []
        for item in data.get("live", []):
            change = WeightChange(item["kind"], item["id"], None)
            directory = self._record_dir(change)
            change.record = (
                EditRecord.load(directory) if change.kind == EDIT else UnlearnRecord.load(directory)
            )
            changes.append(change)
        # a manifest of format 1 has no base fingerprints, and its records' pre-edit copies may be stale
        # (issue #19: undoing an older edit left the later records' copies as they were), so only the model
        # name is checked; the upgraded manifest written below holds the base fingerprints from then on
        old = data.get("format", 1) < MANIFEST_FORMAT
        base = dict(data.get("base") or {})
        for name, expected in base.items():
            why = fingerprint_mismatch(self.bundle.history.param(name), expected)
            if why is not None:
                raise WeightStackError(
                    f"this knowledge base's weight changes were made on other weights: {name}: {why}; "
                    "open it with the model (and dtype) it was made with"
                )
        for change in changes:
            if change.kind == EDIT:
                change.record = self.editor.reapply(change.record, strict=False)
            else:
                self.unlearner.reapply(change.record, strict=False)
            self.changes.append(change)
        if old and self.changes:
            self._base = {
                name: fingerprint(self.bundle.history.base(name)) for name in sorted(self._live_names())
            }
            self._write_manifest()
        else:
            self._base = {name: base[name] for name in self._live_names() if name in base}
        return list(self.changes)

    def _live_names(self) -> set[str]:
        return {name for c in self.changes for name in c.names}

    def push(self, kind: str, record: Any) -> WeightChange:
        """Persist a change that has just been applied to the model."""
        change = WeightChange(kind, record.id, record)
        if kind == UNLEARN:
            self.unlearner.track(record)  # its fingerprints and its place in the model's history
        for name in change.names:
            if name not in self._base and name in record.fingerprints:
                self._base[name] = record.fingerprints[name]
        record.save(self._record_dir(change))
        self.changes.append(change)
        self._write_manifest()
        return change

    def find(self, change_id: str) -> WeightChange | None:
        return next((c for c in self.changes if c.id == change_id), None)

    def remove(self, change_id: str) -> WeightChange:
        """Undo one change wherever it is in the stack (see the module docstring)."""
        change = self.find(change_id)
        if change is None:
            raise KeditError(f"no live weight change with id {change_id!r}")
        if change.kind == EDIT:
            self.editor.remove(change.record)
        else:
            self.unlearner.undo(change.record, strict=False)
        self.changes.remove(change)
        live = self._live_names()
        self._base = {name: fp for name, fp in self._base.items() if name in live}
        self._write_manifest()
        shutil.rmtree(self._record_dir(change), ignore_errors=True)
        return change

    @property
    def n_edits(self) -> int:
        return sum(1 for c in self.changes if c.kind == EDIT)
