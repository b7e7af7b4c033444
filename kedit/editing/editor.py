"""The public entry point: apply, verify, undo and re-apply parametric edits on a loaded model.

>>> from kedit import load_model                                             # doctest: +SKIP
>>> from kedit.editing import ParametricEditor, EditRequest                  # doctest: +SKIP
>>> editor = ParametricEditor(load_model("smollm2-135m"))                   # doctest: +SKIP
>>> rec = editor.apply([EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")])  # doctest: +SKIP
>>> rec.verification[0]["after"]["accuracy"]                                # doctest: +SKIP
1.0
>>> editor.undo(rec)                                                         # doctest: +SKIP

Undo semantics: `undo(rec)` rebuilds every matrix `rec` changed from the base weights and re-applies the
other live changes to it (`ModelBundle.history`), so it is exact. If a later live edit changed one of
those matrices (it was computed on top of `rec`), the undo is refused with an EditError naming the later
edits, unless `cascade=True`, which first undoes those later edits (newest first). `remove(rec)` takes
`rec` back alone and keeps the later edits, as if `rec` had never been made (what a knowledge layer's
undo does).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import torch

from kedit.editing.corpus import StatsCorpus, resolve_corpus
from kedit.editing.covariance import load_second_moments, second_moments
from kedit.editing.edit_info import EditInfo
from kedit.editing.projection import NullSpaceProjector
from kedit.editing.records import EditRecord, new_id
from kedit.editing.registry import (
    EditConfig,
    EditRun,
    config_from_dict,
    default_config,
    get_method,
    method_names,
)
from kedit.editing.requests import EditRequest, EditRequestError
from kedit.editing.tracing import check_editable
from kedit.editing.woodbury import Factorised
from kedit.errors import EditError, KeditError, NothingToEditError
from kedit.runtime.deltas import WeightDelta, fingerprint, fingerprint_mismatch
from kedit.scoring import TargetScore, score_targets

log = logging.getLogger(__name__)

# A factorised fixed part of a solve (d_ff² float64 per layer) is kept up to this size: 256 MB is
# d_ff ≈ 5800; larger models factorise per batch, as costly as the direct solve.
FACTOR_CACHE_BYTES = 256 << 20


def on_device(device: torch.device | str) -> contextlib.AbstractContextManager:
    """Factory functions create tensors on `device` inside the block. A no-op when that is already the
    default device: `torch.device` as a context is a Python mode every torch call goes through (~5 % of a
    ROME edit on CPU), and there it changes nothing."""
    if torch.device(device) == torch.get_default_device():
        return contextlib.nullcontext()
    return torch.device(device)


def _score_dict(s: TargetScore) -> dict[str, Any]:
    return {
        "prob": s.prob,
        "mean_prob": s.mean_prob,
        "accuracy": s.accuracy,
        "first_token_rank": s.first_token_rank,
    }


class ParametricEditor:
    """Edits one loaded model in place and keeps what is needed to take each edit back.

    Holds the per-model caches: context templates, second moments, inverse covariances, null-space
    projectors, AlphaEdit's cache of past edited keys and the factorised fixed parts of the MEMIT and
    AlphaEdit solves.
    """

    def __init__(
        self,
        bundle,
        *,
        corpus: str | Path | StatsCorpus | None = None,
        statistics: str | Path | Mapping[int, torch.Tensor] | None = None,
    ):
        """`corpus`: the text of the key statistics (default: the Wikipedia excerpt installed with kedit,
        or `$KEDIT_STATS_CORPUS`); `statistics`: precomputed E[kkᵀ] per layer (a safetensors file of
        `layer.<l>` tensors, or a mapping), used instead of computing them."""
        check_editable(bundle)
        self.bundle = bundle
        self.corpus = resolve_corpus(corpus)
        if isinstance(statistics, (str, Path)):
            statistics = load_second_moments(statistics)
        self._given = dict(statistics) if statistics is not None else None
        self.live: list[EditRecord] = []
        self._covs: dict[tuple[int, int], torch.Tensor] = {}
        self._inv: dict[tuple[int, int], torch.Tensor] = {}
        self._proj: dict[tuple[int, int, float | None, float | None], NullSpaceProjector] = {}
        self._factors: dict[Hashable, tuple[Hashable, Factorised]] = {}

    # -- caches --------------------------------------------------------------------------------
    def second_moments(self, layers: list[int], n_tokens: int) -> dict[int, torch.Tensor]:
        if self._given is not None:
            absent = sorted(set(layers) - set(self._given))
            if absent:
                raise EditError(
                    f"the statistics given to the editor have no layer {absent} (they hold {sorted(self._given)})"
                )
            return {l: self._given[l] for l in layers}
        missing = [l for l in layers if (l, n_tokens) not in self._covs]
        if missing:
            # One corpus pass serves every layer up to the deepest: collect the default edit layers of
            # every method along with the requested ones, so the statistics are computed once.
            family = self.bundle.spec.family
            wanted = set(missing)
            for method in method_names():
                wanted |= set(default_config(method, family).edit_layers)
            n_layers = self.bundle.spec.n_layers(self.bundle.model)
            wanted = {l for l in wanted if 0 <= l < n_layers and (l, n_tokens) not in self._covs}
            with on_device(self.bundle.device):
                stats = second_moments(self.bundle, sorted(wanted), n_tokens, corpus=self.corpus)
            for l, c in stats.items():
                self._covs[(l, n_tokens)] = c.to(self.bundle.device)  # cached beside the model
        return {l: self._covs[(l, n_tokens)] for l in layers}

    def projector(
        self, layer: int, n_tokens: int, threshold: float | None, energy: float | None = None
    ) -> NullSpaceProjector:
        """AlphaEdit's projector of a layer: absolute τ `threshold`, or (if None) the `energy` rule."""
        key = (layer, n_tokens, threshold, None if threshold is not None else energy)
        if key not in self._proj:
            c = self.second_moments([layer], n_tokens)[layer]
            self._proj[key] = NullSpaceProjector.from_second_moment(c, threshold, layer, energy=energy)
        return self._proj[key]

    def inverse_second_moment(self, layer: int, n_tokens: int) -> torch.Tensor:
        """C⁻¹ of a layer (ROME's u = C⁻¹k̄ with `mom2_adjustment`), inverted in float64 once per model."""
        key = (layer, n_tokens)
        if key not in self._inv:
            c = self.second_moments([layer], n_tokens)[layer]
            self._inv[key] = torch.linalg.inv(c.double()).float()
        return self._inv[key]

    def factorised(self, slot: Hashable, token: Hashable, build: Callable[[], torch.Tensor]) -> Factorised:
        """The LU factors of the float64 matrix `build()` makes, kept in `slot` while `token` (what the matrix
        depends on) is unchanged; a new token replaces them, so a slot holds one factorisation. Matrices over
        `FACTOR_CACHE_BYTES` are factorised on every call, not kept."""
        held = self._factors.get(slot)
        if held is not None and held[0] == token:
            return held[1]
        self._factors.pop(slot, None)
        factors = Factorised.of(build())
        if factors.nbytes <= FACTOR_CACHE_BYTES:
            self._factors[slot] = (token, factors)
        return factors

    def live_ids_with(self, tensor: str) -> tuple[str, ...]:
        """Ids of the live records holding the extra tensor `tensor` (e.g. `keys.5`), oldest first."""
        return tuple(r.id for r in self.live if tensor in r.extra_tensors)

    def past_keys(self, layers: list[int]) -> dict[int, torch.Tensor]:
        """AlphaEdit's Σ K_p K_pᵀ over the edited keys of the live MEMIT and AlphaEdit records, per layer.

        Summed in float32 (half the memory of float64: d_ff² per layer, 0.8 GB at d_ff = 14336); the solve
        casts it to float64. Against a float64 sum the AlphaEdit solution moves by 2e-8 relative
        (benchmarks/studies/edit_footprint.py)."""
        d_ff = self.bundle.spec.d_ff(self.bundle.model)
        device = self.bundle.device
        out = {l: torch.zeros(d_ff, d_ff, dtype=torch.float32, device=device) for l in layers}
        for rec in self.live:
            for l in layers:
                k = rec.extra_tensors.get(f"keys.{l}")
                if k is not None:
                    k = k.to(device=device, dtype=torch.float32)
                    out[l].addmm_(k, k.T)
        return out

    # -- edits ---------------------------------------------------------------------------------
    def _param(self, name: str) -> torch.nn.Parameter:
        return self.bundle.model.get_parameter(name)

    def apply(
        self,
        requests: list[EditRequest] | EditRequest,
        method: str = "rome",
        config: EditConfig | None = None,
        sadr: bool = False,
        verify: bool = True,
    ) -> EditRecord:
        """Write the requests into the weights; returns the (live) record with verification.

        `method`: a registered method name (registry.py); `config`: an instance of its config class, None
        for the measured default of the model's family. `verify=False` skips the after-edit scoring
        (`record.verification` stays empty) for a caller that scores the edited model itself.
        Atomic: on any error (bad input, non-finite value) the weights are restored and EditError raised.
        """
        t0 = time.perf_counter()
        if isinstance(requests, EditRequest):
            requests = [requests]
        requests = list(requests)
        if not requests:
            raise EditRequestError("no edit requests given")
        edit_method = get_method(method)  # UnknownEditMethodError
        cfg = config if config is not None else default_config(method, self.bundle.spec.family)
        if type(cfg) is not edit_method.config_cls:
            raise EditRequestError(
                f"method '{method}' needs a {edit_method.config_cls.__name__}, got {type(cfg).__name__}"
            )
        if sadr and not edit_method.sadr:
            with_sadr = "/".join(m for m in method_names() if get_method(m).sadr)
            raise EditRequestError(f"SADR regularises the value optimisation of {with_sadr}, not {method}")
        self._check_layers(cfg)
        prompts = [r.text for r in requests]
        targets = [r.target for r in requests]
        before = score_targets(self.bundle, prompts, targets)
        for r, s in zip(requests, before):
            if s.accuracy == 1.0:
                raise NothingToEditError(
                    f"the model already answers '{r.target}' to '{r.text}' (teacher-forced accuracy 1.0): nothing to edit"
                )
        t_check = time.perf_counter()

        steps: list[tuple[str, WeightDelta]] = []
        prints: dict[str, dict] = {}
        history, rid = self.bundle.history, new_id()

        def commit(name: str, change: WeightDelta) -> None:
            param = self._param(name)
            if not change.fits(tuple(param.shape)) or not change.finite():
                raise EditError(f"invalid update for {name}; weights restored")
            if name not in prints:
                prints[name] = fingerprint(param)
            history.step(rid, name, change)
            steps.append((name, change))

        run = EditRun(
            self,
            sadr,
            commit,
            EditInfo(
                model=self.bundle.name,
                family=self.bundle.spec.family,
                sadr=sadr,
                dtype=str(self.bundle.dtype).removeprefix("torch."),
            ),
        )
        try:
            with on_device(self.bundle.device):  # tensors the editors create live beside the model
                edit_method.apply(run, cfg, requests)
            for name in prints:
                if not torch.isfinite(self._param(name)).all():
                    raise EditError(f"edit made {name} non-finite; weights restored")
        except BaseException:
            if rid in history:
                history.remove(rid)  # every matrix rebuilt as it was: exact
            raise
        t_edit = time.perf_counter()
        after = score_targets(self.bundle, prompts, targets) if verify else []
        verification = [
            {
                "prompt": p,
                "target": t,
                "before": _score_dict(b),
                "after": _score_dict(a),
                "success": a.accuracy == 1.0,
            }
            for p, t, b, a in zip(prompts, targets, before, after)
        ]
        timings = {
            "check_s": t_check - t0,
            "edit_s": t_edit - t_check,
            "verify_s": time.perf_counter() - t_edit,
            "total_s": time.perf_counter() - t0,
        }
        record = EditRecord(
            rid,
            method,
            cfg.to_dict(),
            requests,
            steps,
            prints,
            timings=timings,
            verification=verification,
            info=run.info,
            extra_tensors=run.extra,
        )
        self.live.append(record)
        log.info(
            "kedit: %s edit %s of %d request(s) in %.2fs",
            method,
            record.id,
            len(requests),
            timings["total_s"],
        )
        return record

    def _check_layers(self, cfg: EditConfig) -> None:
        n = self.bundle.spec.n_layers(self.bundle.model)
        layers = list(cfg.edit_layers)
        bad = [l for l in layers if not 0 <= l < n - 1]
        if bad or not layers:
            raise EditRequestError(f"edit layers {layers} out of range for a {n}-layer model")

    # -- undo / reapply ------------------------------------------------------------------------
    def undo(self, record: EditRecord, cascade: bool = False) -> list[EditRecord]:
        """Take `record` back bit-exact; returns the records undone (newest first). See module docstring."""
        idx = next((i for i, r in enumerate(self.live) if r.id == record.id), None)
        if idx is None:
            raise EditError(
                f"edit {record.id} is not live on this model (already undone or never applied here)"
            )
        later = [r for r in self.live[idx + 1 :] if set(r.changed) & set(record.changed)]
        if later and not cascade:
            ids = ", ".join(r.id for r in later)
            raise EditError(
                f"edit {record.id} cannot be undone alone: later edit(s) {ids} changed the same matrices; "
                "undo them first or pass cascade=True"
            )
        undone = []
        for r in reversed(later):
            undone += self.undo(r, cascade=True)
        self.remove(record)
        undone.append(record)
        return undone

    def remove(self, record: EditRecord) -> None:
        """Take `record` back alone, wherever it is: its matrices are rebuilt from the base weights and
        every other live change re-applied in order (the model as if `record` had never been made)."""
        if not any(r.id == record.id for r in self.live):
            raise EditError(
                f"edit {record.id} is not live on this model (already undone or never applied here)"
            )
        try:
            self.bundle.history.remove(record.id)
        except KeditError as exc:
            raise EditError(f"edit {record.id}: {exc}") from exc
        self.live = [r for r in self.live if r.id != record.id]

    def reapply(self, record: EditRecord, strict: bool = True) -> EditRecord:
        """Replay a saved record's changes on this model (e.g. freshly loaded); returns the live record.

        With `strict`, each matrix must be the one the record was made on (its fingerprint); then the
        result is bit-identical to the original post-edit weights. Otherwise the changes are added to
        whatever is there.
        """
        if any(r.id == record.id for r in self.live):
            raise EditError(f"edit {record.id} is already live on this model")
        for name, change in record.steps:
            try:
                param = self._param(name)
            except AttributeError as exc:
                raise EditError(f"edit {record.id} changes {name}, which this model does not have") from exc
            if not change.fits(tuple(param.shape)):
                raise EditError(
                    f"edit {record.id}: {name} has shape {tuple(param.shape)}, which the edit does not fit"
                )
        if strict:
            for name, expected in record.fingerprints.items():
                why = fingerprint_mismatch(self._param(name), expected)
                if why is not None:
                    raise EditError(
                        f"edit {record.id}: current {name} differs from the weights it was made on ({why}); "
                        "load the same base model (or pass strict=False)"
                    )
        if record.id in self.bundle.history:  # applied by another editor of this model
            raise EditError(f"edit {record.id} is already live on this model")
        device = self.bundle.device
        record.steps = [(name, change.to(device)) for name, change in record.steps]
        try:
            self.bundle.history.apply(record.id, record.steps)
        except BaseException:
            if record.id in self.bundle.history:
                self.bundle.history.remove(record.id)
            raise
        self.live.append(record)
        return record

    def config_of(self, record: EditRecord) -> EditConfig:
        """The config object a record was made with."""
        return config_from_dict(record.method, record.config)
