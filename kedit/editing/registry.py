"""The editing methods by name: each method module registers its config class and `apply` entry point.

Modelled on huggingface/peft's tuner registry: `kedit/editing/rome.py`, `memit.py`, `alphaedit.py`
and `ft.py` each end with a `register_method(...)` call, and `ParametricEditor` looks the method up
here instead of branching on its name. A new method is one module that registers itself.

>>> import kedit.editing                      # importing the package registers the built-in methods
>>> method_names()
('rome', 'memit', 'alphaedit', 'ft-l')
>>> get_method("memit").config_cls.__name__
'MEMITConfig'
>>> default_config("rome", "gemma3").layer
2
>>> get_method("grace")
Traceback (most recent call last):
kedit.errors.UnknownEditMethodError: unknown editing method 'grace' (known: rome, memit, alphaedit, ft-l)
>>> config_from_dict("rome", {"layer": 5, "lr": 0.1})
Traceback (most recent call last):
kedit.errors.UnknownConfigKeyError: a rome config has no setting 'lr' (ROMEConfig)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

import torch

from kedit.editing.edit_info import EditInfo
from kedit.errors import UnknownConfigKeyError, UnknownEditMethodError
from kedit.runtime.deltas import WeightDelta

if TYPE_CHECKING:
    from kedit.editing.projection import NullSpaceProjector
    from kedit.editing.requests import EditRequest
    from kedit.editing.woodbury import Factorised


class EditConfig(Protocol):
    """What the editor needs of any method's (frozen dataclass) config."""

    @property
    def edit_layers(self) -> tuple[int, ...]: ...

    def to_dict(self) -> dict[str, Any]: ...


class EditorCaches(Protocol):
    """What a method's `apply` uses of `ParametricEditor`: the model and its per-model caches. A protocol,
    not the class, so that the registry (imported by the editor) does not import the editor back."""

    bundle: Any

    def second_moments(self, layers: list[int], n_tokens: int) -> dict[int, torch.Tensor]: ...

    def inverse_second_moment(self, layer: int, n_tokens: int) -> torch.Tensor: ...

    def projector(
        self, layer: int, n_tokens: int, threshold: float | None, energy: float | None = None
    ) -> NullSpaceProjector: ...

    def factorised(
        self, slot: Hashable, token: Hashable, build: Callable[[], torch.Tensor]
    ) -> Factorised: ...

    def live_ids_with(self, tensor: str) -> tuple[str, ...]: ...

    def past_keys(self, layers: list[int]) -> dict[int, torch.Tensor]: ...


@dataclass
class EditRun:
    """What a method's `apply` works with during one `ParametricEditor.apply` call.

    `commit(name, change)` checks a change and applies it to the parameter `name` (restored by the
    editor if the run fails later); `info` and `extra` become the record's info and extra tensors.
    """

    editor: EditorCaches  # the ParametricEditor: second moments, projectors, past keys
    sadr: bool
    commit: Callable[[str, WeightDelta], None]
    info: EditInfo = field(default_factory=EditInfo)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def bundle(self):
        return self.editor.bundle


ApplyFn = Callable[[EditRun, Any, "list[EditRequest]"], None]


@dataclass(frozen=True)
class EditMethod:
    """One registered method: its config class, its `apply(run, cfg, requests)` and its defaults.

    `family_defaults`: per model family, the settings that differ from the class defaults (measured,
    benchmarks/EDITING.md). `saved_defaults`: the value of a setting a record saved before the setting
    existed was made with. `sadr`: whether the method has a value optimisation SADR can regularise.
    """

    name: str
    config_cls: type
    apply: ApplyFn
    family_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    saved_defaults: Mapping[str, Any] = field(default_factory=dict)
    sadr: bool = True

    def default_config(self, family: str) -> EditConfig:
        return self.config_cls(**self.family_defaults.get(family, {}))

    def config_from_dict(self, data: Mapping[str, Any]) -> EditConfig:
        names = {f.name for f in fields(self.config_cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UnknownConfigKeyError(
                f"a {self.name} config has no setting {', '.join(repr(k) for k in unknown)} ({self.config_cls.__name__})"
            )
        kwargs = {key: _as_tuples(value) for key, value in data.items()}  # to_dict() wrote tuples as lists
        for key, value in self.saved_defaults.items():
            kwargs.setdefault(key, value)
        return self.config_cls(**kwargs)


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(x) for x in value) if isinstance(value, (list, tuple)) else value


_METHODS: dict[str, EditMethod] = {}


def register_method(
    name: str,
    config_cls: type,
    apply: ApplyFn,
    *,
    family_defaults: Mapping[str, Mapping[str, Any]] | None = None,
    saved_defaults: Mapping[str, Any] | None = None,
    sadr: bool = True,
) -> EditMethod:
    """Make `name` an editing method of `ParametricEditor.apply`; returns its registry entry."""
    if name in _METHODS:
        raise ValueError(f"an editing method '{name}' is registered already")
    method = EditMethod(
        name, config_cls, apply, dict(family_defaults or {}), dict(saved_defaults or {}), sadr
    )
    _METHODS[name] = method
    return method


def get_method(name: str) -> EditMethod:
    """The method registered as `name`; UnknownEditMethodError if there is none."""
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownEditMethodError(
            f"unknown editing method '{name}' (known: {', '.join(_METHODS)})"
        ) from None


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_METHODS)


def default_config(method: str, family: str) -> EditConfig:
    """The measured default config of `method` for a model family (class defaults where none is listed)."""
    return get_method(method).default_config(family)


def config_from_dict(method: str, data: Mapping[str, Any]) -> EditConfig:
    """Rebuild a config saved by `to_dict()` (lists back to tuples); unknown keys are an error."""
    return get_method(method).config_from_dict(data)
