"""`Unlearner`: make the model stop stating facts (GU-projected NPO / GA / SimNPO), verify, undo.

One run: score every pair; refuse facts the model does not state; then, on a few MLP layers, step on
the forget objective with each step projected H-orthogonal to the retain gradients (GU, docs/methods.md §5.2)
until every forget target is below the probability / rank thresholds or `max_steps` is reached
(training.py: one forward/backward pass per step and chunk of `batch_rows` pairs); score again and verify.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
import uuid
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from kedit.runtime.deltas import Dense, fingerprint_mismatch
from kedit.scoring import score_targets
from kedit.unlearning.config import UnlearnConfig, default_layers
from kedit.unlearning.errors import FactNotKnownError, UnlearnError
from kedit.unlearning.record import ProbeChange, UnlearnRecord
from kedit.unlearning.training import Pair, StepCallback, train


def _as_pairs(items: Sequence[Pair], what: str) -> list[Pair]:
    pairs = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise UnlearnError(f"{what} entries must be (prompt, answer) string pairs, got {item!r}")
        prompt, answer = item[0].strip(), item[1].strip()
        if not prompt or not answer:
            raise UnlearnError(f"{what} entry {tuple(item)!r} has an empty prompt or answer")
        pairs.append((prompt, answer))
    return pairs


class Unlearner:
    """Unlearns facts from a loaded model in place, keeping an exact record of every weight it changed.

    >>> from kedit import load_model                                               # doctest: +SKIP
    >>> un = Unlearner(load_model("smollm2-135m"))                                 # doctest: +SKIP
    >>> rec = un.forget([("The capital of France is", "Paris")],                   # doctest: +SKIP
    ...                 retain=[("The capital of Germany is", "Berlin"), ("The capital of Italy is", "Rome")])
    >>> rec.verified, rec.forget[0].prob_before, rec.forget[0].prob_after          # doctest: +SKIP
    (True, 0.77, 0.004)
    >>> un.undo(rec)                                 # weights bit-identical to before   # doctest: +SKIP
    """

    def __init__(self, bundle):
        self.bundle = bundle

    # -- parameters -------------------------------------------------------------------------------

    def trained_modules(self, config: UnlearnConfig | None = None) -> dict[str, nn.Module]:
        """The modules whose weights `config` trains, keyed by module name (parameter = name + '.weight')."""
        cfg = config or UnlearnConfig()
        model, spec = self.bundle.model, self.bundle.spec
        n_layers = spec.n_layers(model)
        layers = cfg.layers if cfg.layers is not None else default_layers(n_layers)
        bad = [layer for layer in layers if not 0 <= layer < n_layers]
        if bad:
            raise UnlearnError(f"layers {bad} do not exist: the model has layers 0..{n_layers - 1}")
        modules: dict[str, nn.Module] = {}
        for layer in layers:
            mlp_name = spec.mlp.format(layer)
            mlp = model.get_submodule(mlp_name)
            for param in cfg.params:
                try:
                    module = mlp.get_submodule(param)
                except AttributeError:
                    linear = [n for n, m in mlp.named_children() if hasattr(m, "weight")]
                    raise UnlearnError(
                        f"{mlp_name} has no sub-module {param!r} (it has: {', '.join(linear)})"
                    ) from None
                if getattr(module, "weight", None) is None or module.weight.ndim != 2:
                    raise UnlearnError(f"{mlp_name}.{param} is not a weight matrix")
                modules[f"{mlp_name}.{param}"] = module
        return modules

    def parameters(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The model parameters called `names` (as in `named_parameters()`), e.g. a record's `param_names`."""
        params = dict(self.bundle.model.named_parameters())
        missing = [n for n in names if n not in params]
        if missing:
            raise UnlearnError(
                f"the model has no parameters {missing}: the record is for another architecture"
            )
        return {n: params[n] for n in names}

    # -- forget -----------------------------------------------------------------------------------

    def forget(
        self,
        forget: Sequence[Pair],
        retain: Sequence[Pair] = (),
        config: UnlearnConfig | None = None,
        *,
        paraphrases: Sequence[Pair] = (),
        probes: Sequence[Pair] = (),
        on_step: StepCallback | None = None,
    ) -> UnlearnRecord:
        """Unlearn each (prompt, answer) of `forget` while keeping the `retain` pairs.

        retain: pairs whose gradients the steps are projected against (neighbouring facts; at most
        `n_retain_directions` directions, pairs beyond that are pooled). paraphrases: other wordings
        of the forgotten facts, scored before/after only. probes: held-out retain pairs, scored only.
        on_step(step, info): called after each step's forward (for progress bars).

        Raises FactNotKnownError (nothing changed) when a forget target is already below the
        thresholds, and UnlearnError (weights restored bit-exactly) on bad input or non-finite values.
        """
        cfg = config or UnlearnConfig()
        forget_pairs = _as_pairs(forget, "forget")
        retain_pairs = _as_pairs(retain, "retain")
        para_pairs = _as_pairs(paraphrases, "paraphrases")
        probe_pairs = _as_pairs(probes, "probes")
        if not forget_pairs:
            raise UnlearnError("nothing to forget: pass at least one (prompt, answer) pair")
        if not retain_pairs and (cfg.projection or cfg.retain_weight > 0):
            raise UnlearnError(
                "GU needs retain pairs (e.g. neighbouring facts) to project against; pass retain=[...] "
                "or use UnlearnConfig(projection=False, retain_weight=0)"
            )
        clash = sorted(set(forget_pairs) & set(retain_pairs + probe_pairs))
        if clash:
            raise UnlearnError(f"pairs both to forget and to retain: {clash}")
        modules = self.trained_modules(cfg)
        model = self.bundle.model
        t0 = time.perf_counter()

        everything = forget_pairs + para_pairs + retain_pairs + probe_pairs
        before = score_targets(self.bundle, [p for p, _ in everything], [a for _, a in everything])
        broken = [
            f"{a!r} after {p!r}" for (p, a), s in zip(everything, before) if not math.isfinite(s.logprob)
        ]
        if broken:
            raise UnlearnError(
                f"the model gives non-finite log-probabilities for {', '.join(broken)} before any change "
                "(damaged weights?); nothing was changed"
            )
        unknown = [
            f"{a!r} after {p!r} (prob {s.prob:.4f}, rank {s.first_token_rank})"
            for (p, a), s in zip(forget_pairs, before)
            if cfg.is_forgotten(s.prob, s.first_token_rank)
        ]
        if unknown:
            raise FactNotKnownError(
                "the model does not state " + "; ".join(unknown) + f" — already below the forget thresholds "
                f"(prob <= {cfg.target_max_prob}, rank >= {cfg.target_min_rank}); nothing to forget, "
                "weights unchanged"
            )

        names = [f"{m}.weight" for m in modules]
        weights = {f"{m}.weight": cast(torch.Tensor, mod.weight) for m, mod in modules.items()}
        pre = {n: w.detach().clone() for n, w in weights.items()}
        deltas = {n: torch.zeros_like(w) for n, w in pre.items()}
        grad_flags = {n: w.requires_grad for n, w in weights.items()}
        try:
            for w in weights.values():
                w.requires_grad_(True)
            steps, history = train(
                self.bundle, modules, weights, pre, deltas, forget_pairs, retain_pairs, cfg, on_step
            )
        except BaseException:
            with torch.no_grad():
                for n, w in weights.items():
                    w.copy_(pre[n])
            raise
        finally:
            for n, w in weights.items():
                w.requires_grad_(grad_flags[n])

        after = score_targets(self.bundle, [p for p, _ in everything], [a for _, a in everything])
        changes = [
            ProbeChange(p, a, b.prob, c.prob, b.first_token_rank, c.first_token_rank)
            for (p, a), b, c in zip(everything, before, after)
        ]
        cuts = [len(forget_pairs), len(para_pairs), len(retain_pairs), len(probe_pairs)]
        parts, start = [], 0
        for count in cuts:
            parts.append(changes[start : start + count])
            start += count
        f_changes, para_changes, retain_changes, probe_changes = parts

        reasons = [
            f"{c.target!r} after {c.prompt!r} not forgotten: prob {c.prob_after:.4f}, rank {c.rank_after}"
            for c in f_changes
            if not cfg.is_forgotten(c.prob_after, c.rank_after)
        ]
        kept = retain_changes + probe_changes
        drift = sum(abs(c.delta_prob) for c in kept) / len(kept) if kept else 0.0
        if drift > cfg.retain_budget:
            reasons.append(f"retain probes moved by {drift:.4f} on average (budget {cfg.retain_budget})")
        n_layers = self.bundle.spec.n_layers(model)
        return UnlearnRecord(
            id=uuid.uuid4().hex[:12],
            model=self.bundle.name,
            config=cfg,
            param_names=names,
            forget=f_changes,
            retain=retain_changes,
            paraphrases=para_changes,
            probes=probe_changes,
            layers=list(cfg.layers if cfg.layers is not None else default_layers(n_layers)),
            steps=steps,
            seconds=time.perf_counter() - t0,
            verified=not reasons,
            reasons=reasons,
            history=history,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            pre_weights=pre,
            deltas=deltas,
        )

    # -- undo / reapply ---------------------------------------------------------------------------

    def _check_record(self, record: UnlearnRecord) -> dict[str, torch.Tensor]:
        if record.model != self.bundle.name:
            raise UnlearnError(
                f"record {record.id} was made on model {record.model!r}, not {self.bundle.name!r}"
            )
        params = self.parameters(record.param_names)
        for n, p in params.items():
            if p.shape != record.deltas[n].shape:
                raise UnlearnError(
                    f"record {record.id}: {n} has shape {tuple(p.shape)} in the model, "
                    f"{tuple(record.deltas[n].shape)} in the record"
                )
        return params

    def _steps(self, record: UnlearnRecord) -> list[tuple[str, Dense]]:
        return [(n, Dense(record.deltas[n].to(self.bundle.device))) for n in record.param_names]

    def track(self, record: UnlearnRecord) -> None:
        """Enter a run `forget` has just applied into the model's live changes (undo and reopen rebuild
        from them); its pre-run weights are kept only where the safetensors lack them. Idempotent."""
        history = self.bundle.history
        if record.id in history:
            return
        if set(record.pre_weights) != set(record.param_names):
            raise UnlearnError(
                f"record {record.id} is not live on this model (undone already, or never applied here)"
            )
        self._check_record(record)
        record.take_fingerprints()
        history.register(record.id, self._steps(record), before=record.pre_weights)
        record.pre_weights = {}

    @torch.no_grad()
    def undo(self, record: UnlearnRecord, strict: bool = True) -> None:
        """Take the run back bit-exactly: its weights are rebuilt from the base weights and the other
        live changes re-applied in order.

        strict: refuse (UnlearnError, nothing touched) when a later live change touched the same
        weights, i.e. they changed since the run; strict=False takes the run back alone anyway, keeping
        the later changes (the model as if the run had never been made).

        >>> un.undo(rec)                     # doctest: +SKIP
        """
        history = self.bundle.history
        if record.id not in history:
            if set(record.pre_weights) != set(record.param_names):
                raise UnlearnError(
                    f"cannot undo record {record.id}: it is not live on this model (undone "
                    "already, or its weights changed since it was applied)"
                )
            self.track(record)
        if strict:
            later = history.later_touching(record.id)
            if later:
                raise UnlearnError(
                    f"cannot undo record {record.id}: its weights changed since it was applied (later changes "
                    f"{', '.join(later)}); undo those first, or undo(record, strict=False)"
                )
        history.remove(record.id)

    @torch.no_grad()
    def reapply(self, record: UnlearnRecord, strict: bool = True) -> None:
        """Apply a saved run again (e.g. when a knowledge base is reopened): the deltas are added the way
        the run added them, so on the same weights the result is bit-identical to what the run produced.

        strict: the weights must be those the run was made on (their fingerprints); otherwise
        UnlearnError and nothing is touched. strict=False adds the delta to whatever is there now.

        >>> un.reapply(UnlearnRecord.load("kb/unlearn/3fa2c1d09e7b"))       # doctest: +SKIP
        """
        params = self._check_record(record)
        if record.id in self.bundle.history:
            raise UnlearnError(
                f"cannot reapply record {record.id}: it is live already (its weights differ "
                "from its pre-weights)"
            )
        if strict:
            prints = record.take_fingerprints()
            differ = [
                f"{n} ({why})"
                for n, p in params.items()
                if n in prints and (why := fingerprint_mismatch(p, prints[n])) is not None
            ]
            if differ:
                raise UnlearnError(
                    f"cannot reapply record {record.id}: {', '.join(differ)} differ from its pre-weights "
                    "(the model was changed since; reapply(record, strict=False) adds the delta anyway)"
                )
        self.bundle.history.apply(record.id, self._steps(record))
