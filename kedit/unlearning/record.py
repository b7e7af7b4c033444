"""`UnlearnRecord`: what one `forget` run changed and measured, enough to undo or replay it bit-exactly.

Trained weights follow W = W_pre + Δ throughout the run, so adding `deltas` to the pre-run weights
reproduces the unlearned weights exactly (the same addition). No pre-run copy is saved (format 2): undo
rebuilds the matrices from the model's base weights (`ModelBundle.history`), and `fingerprints` of the
pre-run weights let a strict re-apply check it is made on the same weights. `pre_weights` is held only in
memory, from the run until the record is tracked in the model's history (`Unlearner.track`). Records of
format 1 (with pre-run copies) still load. Persistence is JSON (everything but tensors) plus one
safetensors file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kedit.runtime.deltas import fingerprint
from kedit.unlearning.config import UnlearnConfig
from kedit.unlearning.errors import UnlearnError

RECORD_JSON = "unlearn_record.json"
RECORD_TENSORS = "unlearn_weights.safetensors"
_FORMAT = 2
_READABLE = (1, 2)


@dataclass(frozen=True)
class ProbeChange:
    """A (prompt, target) pair scored before and after unlearning (teacher forced, `kedit.scoring`)."""

    prompt: str
    target: str
    prob_before: float
    prob_after: float
    rank_before: int  # rank of the first target token, 0 = top prediction
    rank_after: int

    @property
    def delta_prob(self) -> float:
        return self.prob_after - self.prob_before


def _mean_abs(changes: list[ProbeChange]) -> float:
    return sum(abs(c.delta_prob) for c in changes) / len(changes) if changes else 0.0


@dataclass
class UnlearnRecord:
    """The outcome of `Unlearner.forget`.

    >>> rec = Unlearner(bundle).forget([("The capital of France is", "Paris")],       # doctest: +SKIP
    ...                                [("The capital of Germany is", "Berlin")])
    >>> rec.verified, rec.forget[0].prob_after, rec.forget[0].rank_after           # doctest: +SKIP
    (True, 0.009, 14)
    >>> rec.save("kb/unlearn/" + rec.id); UnlearnRecord.load("kb/unlearn/" + rec.id)  # doctest: +SKIP
    """

    id: str
    model: str
    config: UnlearnConfig
    param_names: list[str]
    forget: list[ProbeChange]
    retain: list[ProbeChange]
    paraphrases: list[ProbeChange] = field(default_factory=list)
    probes: list[ProbeChange] = field(default_factory=list)  # held-out retain probes (not trained on)
    layers: list[int] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    verified: bool = False
    reasons: list[str] = field(default_factory=list)  # why verification failed (empty when verified)
    history: list[dict] = field(default_factory=list)  # per step: forget loss, max target prob, retain cos
    created: str = ""
    pre_weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # in memory, until tracked
    deltas: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    fingerprints: dict[str, dict] = field(default_factory=dict, repr=False)  # of the pre-run weights

    @property
    def retain_mean_abs_change(self) -> float:
        """Mean |Δprob| over the retain pairs (the ones whose gradients were projected out)."""
        return _mean_abs(self.retain)

    @property
    def probes_mean_abs_change(self) -> float:
        """Mean |Δprob| over the held-out probes."""
        return _mean_abs(self.probes)

    def post_weights(self) -> dict[str, torch.Tensor]:
        """The unlearned weights, bit-identical to those the run left in the model (while the record
        still holds its pre-run weights, i.e. before it is tracked)."""
        if set(self.pre_weights) != set(self.param_names):
            raise UnlearnError(
                f"record {self.id} no longer holds its pre-run weights (they are the model's history)"
            )
        return {name: self.pre_weights[name] + self.deltas[name] for name in self.param_names}

    def take_fingerprints(self) -> dict[str, dict]:
        """Fingerprints of the pre-run weights (taken from `pre_weights` the first time)."""
        if not self.fingerprints and self.pre_weights:
            self.fingerprints = {n: fingerprint(self.pre_weights[n]) for n in self.param_names}
        return self.fingerprints

    def summary(self) -> dict:
        """JSON-ready description without tensors (what a ledger or CLI `--json` shows)."""
        return {
            "format": _FORMAT,
            "id": self.id,
            "model": self.model,
            "config": self.config.to_dict(),
            "param_names": self.param_names,
            "layers": self.layers,
            "forget": [asdict(c) for c in self.forget],
            "paraphrases": [asdict(c) for c in self.paraphrases],
            "retain": [asdict(c) for c in self.retain],
            "probes": [asdict(c) for c in self.probes],
            "retain_mean_abs_change": self.retain_mean_abs_change,
            "probes_mean_abs_change": self.probes_mean_abs_change,
            "steps": self.steps,
            "seconds": self.seconds,
            "verified": self.verified,
            "reasons": self.reasons,
            "history": self.history,
            "created": self.created,
        }

    def save(self, directory: str | Path) -> Path:
        """Write `unlearn_record.json` and `unlearn_weights.safetensors` into `directory` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"delta/{n}": self.deltas[n].detach().cpu().contiguous() for n in self.param_names}
        tensor_path = directory / RECORD_TENSORS
        save_file(tensors, str(tensor_path))
        meta = self.summary()
        meta["fingerprints"] = self.take_fingerprints()
        meta["tensors_sha256"] = hashlib.sha256(tensor_path.read_bytes()).hexdigest()
        (directory / RECORD_JSON).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> UnlearnRecord:
        """Read a record written by `save`; the tensor file is checked against its recorded hash."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / RECORD_JSON).read_text())
            raw = (directory / RECORD_TENSORS).read_bytes()
        except (OSError, ValueError) as exc:
            raise UnlearnError(f"{directory} does not hold a readable unlearning record: {exc}") from exc
        if meta.get("format") not in _READABLE:
            raise UnlearnError(f"{directory}: unknown unlearning record format {meta.get('format')!r}")
        if hashlib.sha256(raw).hexdigest() != meta.get("tensors_sha256"):
            raise UnlearnError(
                f"{directory / RECORD_TENSORS} does not match its record (changed or truncated)"
            )
        tensors = load_file(str(directory / RECORD_TENSORS))
        names = list(meta["param_names"])
        return cls(
            id=meta["id"],
            model=meta["model"],
            config=UnlearnConfig.from_dict(meta["config"]),
            param_names=names,
            forget=[ProbeChange(**c) for c in meta["forget"]],
            retain=[ProbeChange(**c) for c in meta["retain"]],
            paraphrases=[ProbeChange(**c) for c in meta["paraphrases"]],
            probes=[ProbeChange(**c) for c in meta["probes"]],
            layers=list(meta["layers"]),
            steps=int(meta["steps"]),
            seconds=float(meta["seconds"]),
            verified=bool(meta["verified"]),
            reasons=list(meta["reasons"]),
            history=list(meta["history"]),
            created=meta["created"],
            deltas={n: tensors[f"delta/{n}"] for n in names},
            # format 1 saved the pre-run weights: only their fingerprints are kept
            fingerprints=(
                meta.get("fingerprints") or {}
                if meta["format"] >= 2
                else {n: fingerprint(tensors[f"pre/{n}"]) for n in names}
            ),
        )
