"""Parametric knowledge editing: ROME, MEMIT, AlphaEdit (retain projection), SADR, FT-L, undo.

>>> from kedit import load_model                                             # doctest: +SKIP
>>> from kedit.editing import ParametricEditor, EditRequest                  # doctest: +SKIP
>>> editor = ParametricEditor(load_model("smollm2-135m"))                   # doctest: +SKIP
>>> rec = editor.apply([EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")],
...                    method="rome")                                        # doctest: +SKIP
>>> rec.success, editor.undo(rec)[0] is rec                                  # doctest: +SKIP
(True, True)
"""

from kedit.editing.config import (
    METHODS,
    AlphaEditConfig,
    FTConfig,
    MEMITConfig,
    ROMEConfig,
    config_from_dict,
    default_config,
)
from kedit.editing.editor import ParametricEditor
from kedit.editing.projection import NullSpaceProjector
from kedit.editing.records import EditRecord
from kedit.editing.requests import EditRequest, EditRequestError

__all__ = [
    "METHODS",
    "AlphaEditConfig",
    "EditRecord",
    "EditRequest",
    "EditRequestError",
    "FTConfig",
    "MEMITConfig",
    "NullSpaceProjector",
    "ParametricEditor",
    "ROMEConfig",
    "config_from_dict",
    "default_config",
]
