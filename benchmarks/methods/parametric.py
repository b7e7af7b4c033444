"""Weight editors as benchmark methods: ROME / MEMIT / AlphaEdit / FT-L through `kedit.editing.ParametricEditor`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from benchmarks.data.cases import FactEdit
from benchmarks.methods.base import Applied, Method
from kedit.editing import EditRequest, ParametricEditor, default_config
from kedit.errors import EditError, NothingToEditError
from kedit.scoring import score_targets

PARAMETRIC = ("rome", "memit", "alphaedit", "ft-l")


class ParametricMethod(Method):
    """ROME / MEMIT / AlphaEdit / FT-L through `kedit.editing.ParametricEditor` (weights change in place)."""

    def __init__(self, bundle, algorithm: str, sadr: bool = False) -> None:
        super().__init__(bundle)
        self.name = algorithm
        self.algorithm = algorithm
        self.sadr = sadr
        self.editor = ParametricEditor(bundle)

    def settings(self) -> dict[str, Any]:
        """SADR on/off and the editor's hyper-parameters for this model (its family's defaults)."""
        return {"sadr": self.sadr, "config": asdict(default_config(self.algorithm, self.bundle.spec.family))}

    def apply(self, facts: Sequence[FactEdit]) -> Applied:
        """Edit the facts the model does not already state; ParametricEditor refuses a request whose target
        already has teacher-forced accuracy 1.0, and for a benchmark such a fact is simply already in place."""
        t0 = time.perf_counter()
        try:  # a malformed request (subject not in the prompt, ...) is an EditError too
            requests = [EditRequest(f.prompt, f.subject, f.target) for f in facts]
            if len(requests) > 1:  # drop the facts already in place (the editor refuses the whole batch)
                before = score_targets(self.bundle, [r.text for r in requests], [r.target for r in requests])
                requests = [r for r, s in zip(requests, before) if s.accuracy < 1.0]
            # the runners score the edited model themselves: no after-edit verification
            record = (
                self.editor.apply(requests, method=self.algorithm, sadr=self.sadr, verify=False)
                if requests
                else None
            )
        except NothingToEditError:  # one fact, already in place: the editor's check is the same score
            record = None
        except EditError as exc:
            return Applied(tuple(facts), None, str(exc), time.perf_counter() - t0)
        return Applied(tuple(facts), record, None, time.perf_counter() - t0)

    def undo(self, applied: Applied) -> None:
        if applied.handle is not None:
            self.editor.undo(applied.handle)

    def row_weights(self, applied: Applied) -> dict[str, Any] | None:
        """Copies of the matrices the edit changed (the record's `changed` names), as edited."""
        if applied.handle is None:
            return {}
        model = self.bundle.model
        return {name: model.get_parameter(name).detach().clone() for name in applied.handle.changed}
