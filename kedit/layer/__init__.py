"""The public face of kedit: one object that decides where each piece of knowledge goes and answers
questions from all of it.

>>> from kedit import KnowledgeLayer                                               # doctest: +SKIP
>>> kl = KnowledgeLayer.open("kb/", model="smollm2-135m")                          # doctest: +SKIP
>>> rec = kl.edit("The mother tongue of Danielle Darrieux is", target="English",
...               subject="Danielle Darrieux")                                     # doctest: +SKIP
>>> rec.route, rec.verified                                                        # doctest: +SKIP
(<Route.BOTH: 'both'>, True)
>>> ans = kl.query("What is the mother tongue of Danielle Darrieux?")              # doctest: +SKIP
>>> ans.text, ans.trace["winner"]["tier"]                                          # doctest: +SKIP
('English', 'stored')
>>> kl.undo(rec.id)                                                                # doctest: +SKIP

Rooms: `knowledge_layer` (the facade), `edit` (the edit plan), `insert`, `ledger` (undo, history),
`closed_book` (the empty-store view), `results` (what verbs return).
"""

from kedit.forgetting import ForgetReport
from kedit.layer.closed_book import ClosedBookView
from kedit.layer.knowledge_layer import KnowledgeLayer
from kedit.layer.results import EditResult, InsertResult
from kedit.preference import Tier
from kedit.probes import LOCALITY_PROBES
from kedit.store.hit import Hit

__all__ = [
    "LOCALITY_PROBES",
    "ClosedBookView",
    "EditResult",
    "ForgetReport",
    "Hit",
    "InsertResult",
    "KnowledgeLayer",
    "Tier",
]
