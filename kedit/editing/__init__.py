"""Parametric knowledge editing: ROME, MEMIT, AlphaEdit (retain projection), SADR, FT-L, undo.

>>> from kedit import load_model                                             # doctest: +SKIP
>>> from kedit.editing import ParametricEditor, EditRequest                  # doctest: +SKIP
>>> editor = ParametricEditor(load_model("smollm2-135m"))                   # doctest: +SKIP
>>> rec = editor.apply([EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")],
...                    method="rome")                                        # doctest: +SKIP
>>> rec.success, editor.undo(rec)[0] is rec                                  # doctest: +SKIP
(True, True)
"""

# Importing a method's module registers it (registry.py); the order here is `METHODS`'s.
# isort: off
from kedit.editing.rome import ROMEConfig
from kedit.editing.memit import MEMITConfig
from kedit.editing.alphaedit import AlphaEditConfig
from kedit.editing.ft import FTConfig

# isort: on
from kedit.editing.edit_info import EditInfo, NullSpace, ValueRun
from kedit.editing.editor import ParametricEditor
from kedit.editing.projection import NullSpaceProjector
from kedit.editing.records import EditRecord
from kedit.editing.registry import (
    EditMethod,
    EditRun,
    config_from_dict,
    default_config,
    get_method,
    method_names,
    register_method,
)
from kedit.editing.requests import EditRequest, EditRequestError

METHODS = method_names()

__all__ = [
    "METHODS",
    "AlphaEditConfig",
    "EditInfo",
    "EditMethod",
    "EditRecord",
    "EditRequest",
    "EditRequestError",
    "EditRun",
    "FTConfig",
    "MEMITConfig",
    "NullSpace",
    "NullSpaceProjector",
    "ParametricEditor",
    "ROMEConfig",
    "ValueRun",
    "config_from_dict",
    "default_config",
    "get_method",
    "method_names",
    "register_method",
]
