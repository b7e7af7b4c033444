"""Unlearning: make the model stop stating a fact (GU-projected NPO / GA / SimNPO), with exact undo.

>>> from kedit import load_model                                                  # doctest: +SKIP
>>> from kedit.unlearning import Unlearner, UnlearnConfig                         # doctest: +SKIP
>>> un = Unlearner(load_model("smollm2-135m"))                                    # doctest: +SKIP
>>> rec = un.forget([("The chemical symbol for gold is", "Au")],                  # doctest: +SKIP
...                 retain=[("The chemical symbol for silver is", "Ag")], config=UnlearnConfig(objective="npo"))
>>> rec.forget[0].prob_after < 0.02, rec.verified                                 # doctest: +SKIP
(True, True)
"""

from kedit.unlearning.config import MANY_FACTS_LR, MANY_FACTS_MAX_STEPS, UnlearnConfig, default_layers
from kedit.unlearning.errors import FactNotKnownError, UnlearnError
from kedit.unlearning.losses import AnswerBatch, answer_scores, ga_loss, nll_loss, npo_loss, simnpo_loss
from kedit.unlearning.projection import h_inner, project_orthogonal
from kedit.unlearning.record import ProbeChange, UnlearnRecord
from kedit.unlearning.unlearner import Unlearner

__all__ = [
    "MANY_FACTS_LR",
    "MANY_FACTS_MAX_STEPS",
    "AnswerBatch",
    "FactNotKnownError",
    "ProbeChange",
    "UnlearnConfig",
    "UnlearnError",
    "UnlearnRecord",
    "Unlearner",
    "answer_scores",
    "default_layers",
    "ga_loss",
    "h_inner",
    "nll_loss",
    "npo_loss",
    "project_orthogonal",
    "simnpo_loss",
]
