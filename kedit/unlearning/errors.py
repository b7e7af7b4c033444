"""Errors the unlearning engine raises. Each names what is wrong; the weights are left untouched."""

from __future__ import annotations

from kedit.errors import KeditError


class UnlearnError(KeditError):
    """Unlearning could not be carried out (bad input, non-finite values, record mismatch).

    Whenever it is raised from `Unlearner.forget`, every trained weight has been restored bit-exactly.
    """


class FactNotKnownError(UnlearnError):
    """The model does not state the fact asked to be forgotten, so there is nothing to unlearn."""
