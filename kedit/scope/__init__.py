"""kedit.scope: which stored facts an input is about (linking, the scope model, learned relations)."""

from kedit.scope.model import Mention, ScopeCandidate, ScopeConfig, ScopeDecision, ScopeModel
from kedit.scope.relations import learned_relation, relation_for_template

__all__ = [
    "Mention",
    "ScopeCandidate",
    "ScopeConfig",
    "ScopeDecision",
    "ScopeModel",
    "learned_relation",
    "relation_for_template",
]
