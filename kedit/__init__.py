"""kedit: a knowledge layer for language models (edit / insert / forget / query)."""

from kedit.errors import (
    EditError,
    KeditError,
    ModelNotFoundError,
    StoreError,
    UnsupportedArchitectureError,
)
from kedit.runtime import ModelBundle, load_model

__version__ = "0.1.0"

__all__ = [
    "EditError",
    "KeditError",
    "ModelBundle",
    "ModelNotFoundError",
    "StoreError",
    "UnsupportedArchitectureError",
    "load_model",
]
