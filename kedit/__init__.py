"""kedit: a knowledge layer for language models (edit / insert / forget / query)."""

from kedit.errors import (
    EditError,
    KeditError,
    ModelNotFoundError,
    StoreError,
    UnsupportedArchitectureError,
)
from kedit.runtime import ModelBundle, load_model, wrap_model


def __getattr__(name: str):
    # KnowledgeLayer pulls in the store, editors and unlearning: import it only when asked for
    if name in ("KnowledgeLayer", "Answer", "EditResult", "ForgetReport", "InsertResult", "Route"):
        from kedit import layer, query, router

        return {
            "KnowledgeLayer": layer.KnowledgeLayer,
            "Answer": query.Answer,
            "EditResult": layer.EditResult,
            "ForgetReport": layer.ForgetReport,
            "InsertResult": layer.InsertResult,
            "Route": router.Route,
        }[name]
    raise AttributeError(f"module 'kedit' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Answer",
    "EditResult",
    "ForgetReport",
    "InsertResult",
    "KnowledgeLayer",
    "Route",
    "EditError",
    "KeditError",
    "ModelBundle",
    "ModelNotFoundError",
    "StoreError",
    "UnsupportedArchitectureError",
    "load_model",
    "wrap_model",
]
