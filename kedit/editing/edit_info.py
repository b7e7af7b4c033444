"""What an edit run measured and decided, beside its weight changes: the typed `info` of an `EditRecord`.

`EditInfo` is filled by the editor (model, family, dtype, SADR) and by the method's `apply` (its value
optimisations, null spaces or fine-tune); `to_json`/`from_json` are the one place it meets `record.json`.

The JSON is nested by concept (`value_runs`, `nullspace`). Records written before `EditInfo` existed hold
flat keys (ROME: `value_steps`/`value_s` lists, one entry per request; MEMIT/AlphaEdit: one batch's
`value_steps`, `value_s`, `value_cpu_s`, `request_steps`, `update_s`; `nullspace_dim|tau|energy` keyed by
layer; `ft_steps`, `ft_loss`); `from_json` reads both.

>>> old = {"model": "m", "family": "llama", "sadr": False, "dtype": "float32",
...        "value_steps": [7, 9], "value_s": [0.5, 0.7], "value_dtype": "bfloat16"}
>>> info = EditInfo.from_json(old)
>>> [(r.steps, r.seconds, r.dtype) for r in info.value_runs]
[(7, 0.5, 'bfloat16'), (9, 0.7, 'bfloat16')]
>>> EditInfo.from_json(info.to_json()) == info
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kedit.errors import EditError

if TYPE_CHECKING:
    from kedit.editing.values import ValueResult

# The flat keys of records written before EditInfo (read by `_legacy`, never written).
_LEGACY_KEYS = frozenset(
    {
        "value_steps",
        "value_s",
        "value_cpu_s",
        "request_steps",
        "value_dtype",
        "update_s",
        "nullspace_dim",
        "nullspace_tau",
        "nullspace_energy",
    }
)
_KNOWN_KEYS = frozenset(
    {"model", "family", "sadr", "dtype", "value_runs", "update_s", "nullspace", "ft_steps", "ft_loss"}
)


@dataclass(frozen=True)
class ValueRun:
    """One value optimisation (docs/methods.md): ROME runs one per request, MEMIT/AlphaEdit one per batch."""

    steps: int  # optimisation steps taken (a batch: the most any request took)
    seconds: float  # wall clock
    dtype: str | None = None  # precision of the products after the first step; None: not recorded
    cpu_seconds: float | None = None  # process CPU time; None: not recorded (ROME records before EditInfo)
    request_steps: tuple[int, ...] = ()  # forward passes each request of the run took part in

    @classmethod
    def of(cls, vr: ValueResult) -> ValueRun:
        return cls(vr.steps, vr.seconds, vr.dtype, vr.cpu_seconds, tuple(vr.request_steps))

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "dtype": self.dtype,
            "cpu_seconds": self.cpu_seconds,
            "request_steps": list(self.request_steps),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ValueRun:
        return cls(
            int(data["steps"]),
            float(data["seconds"]),
            data.get("dtype"),
            _opt_float(data.get("cpu_seconds")),
            tuple(int(s) for s in data.get("request_steps", ())),
        )


@dataclass(frozen=True)
class NullSpace:
    """AlphaEdit's projector at one layer: its dimension, eigenvalue cut-off τ and kept energy."""

    dim: int
    tau: float
    energy: float


@dataclass
class EditInfo:
    """The record's account of one `ParametricEditor.apply` run (fields a method does not fill stay empty)."""

    model: str = ""
    family: str = ""
    sadr: bool = False
    dtype: str = ""  # the model's dtype during the edit
    value_runs: list[ValueRun] = field(default_factory=list)  # ROME / MEMIT / AlphaEdit, in order
    update_s: float | None = None  # MEMIT/AlphaEdit: keys, residuals and solves (the batch less its values)
    nullspace: dict[int, NullSpace] = field(default_factory=dict)  # AlphaEdit, per edited layer
    ft_steps: int | None = None  # FT-L
    ft_loss: float | None = None
    # Keys this kedit does not know, kept verbatim and written back: a record is the system of record for
    # an edit (undo and replay read it), so a key written by a newer kedit must neither stop it loading
    # nor be lost when it is saved again.
    unknown: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.unknown)
        out.update({"model": self.model, "family": self.family, "sadr": self.sadr, "dtype": self.dtype})
        if self.value_runs:
            out["value_runs"] = [r.to_json() for r in self.value_runs]
        if self.update_s is not None:
            out["update_s"] = self.update_s
        if self.nullspace:
            out["nullspace"] = {
                str(l): {"dim": n.dim, "tau": n.tau, "energy": n.energy} for l, n in self.nullspace.items()
            }
        if self.ft_steps is not None:
            out["ft_steps"], out["ft_loss"] = self.ft_steps, self.ft_loss
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EditInfo:
        """Read `to_json`'s shape or the flat one of older records; a known key of the wrong type: EditError."""
        try:
            if "value_runs" not in data and "nullspace" not in data and _LEGACY_KEYS & set(data):
                return _legacy(data)
            return cls(
                model=str(data.get("model", "")),
                family=str(data.get("family", "")),
                sadr=bool(data.get("sadr", False)),
                dtype=str(data.get("dtype", "")),
                value_runs=[ValueRun.from_json(r) for r in data.get("value_runs", [])],
                update_s=_opt_float(data.get("update_s")),
                nullspace={
                    int(l): NullSpace(int(n["dim"]), float(n["tau"]), float(n["energy"]))
                    for l, n in data.get("nullspace", {}).items()
                },
                ft_steps=None if data.get("ft_steps") is None else int(data["ft_steps"]),
                ft_loss=_opt_float(data.get("ft_loss")),
                unknown={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EditError(f"an edit record's info is malformed ({type(exc).__name__}: {exc})") from exc


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _legacy(data: Mapping[str, Any]) -> EditInfo:
    """The flat info of a record written before EditInfo (see the module docstring)."""
    steps, secs, dtype = data.get("value_steps"), data.get("value_s"), data.get("value_dtype")
    if isinstance(steps, list):  # ROME: one optimisation per request
        runs = [ValueRun(int(n), float(s), dtype) for n, s in zip(steps, secs or [])]
    elif steps is not None:  # MEMIT / AlphaEdit: one per batch
        runs = [
            ValueRun(
                int(steps),
                float(secs or 0.0),
                dtype,
                _opt_float(data.get("value_cpu_s")),
                tuple(int(s) for s in data.get("request_steps", ())),
            )
        ]
    else:
        runs = []
    dims, taus, energies = (data.get(k, {}) for k in ("nullspace_dim", "nullspace_tau", "nullspace_energy"))
    known = _KNOWN_KEYS | _LEGACY_KEYS
    return EditInfo(
        model=str(data.get("model", "")),
        family=str(data.get("family", "")),
        sadr=bool(data.get("sadr", False)),
        dtype=str(data.get("dtype", "")),
        value_runs=runs,
        update_s=_opt_float(data.get("update_s")),
        nullspace={int(l): NullSpace(int(d), float(taus[l]), float(energies[l])) for l, d in dims.items()},
        ft_steps=None if data.get("ft_steps") is None else int(data["ft_steps"]),
        ft_loss=_opt_float(data.get("ft_loss")),
        unknown={k: v for k, v in data.items() if k not in known},
    )
