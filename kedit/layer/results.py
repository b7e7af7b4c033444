"""What the layer's verbs return: one result type per verb, each with `to_dict` for the CLI and the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field

from kedit.router import Route


@dataclass
class EditResult:
    """What `edit` did: the route taken and why, the stored fact, the weight edit and its verification."""

    id: str  # ledger id: pass it to `undo`
    route: Route
    reasons: list[str]
    subject: str
    relation: str | None
    target: str
    prompt: str
    fact_id: int | None = None
    edit_id: str | None = None
    verification: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        """The weight edit verified (target is the teacher-forced argmax), or nothing needed verifying."""
        return all(v.get("after", {}).get("accuracy", 1.0) == 1.0 for v in self.verification)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "route": self.route.value,
            "reasons": self.reasons,
            "subject": self.subject,
            "relation": self.relation,
            "target": self.target,
            "prompt": self.prompt,
            "fact_id": self.fact_id,
            "edit_id": self.edit_id,
            "verified": self.verified,
            "verification": self.verification,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class InsertResult:
    """What `insert` did: the facts and passages it stored (ledger id for `undo`)."""

    id: str
    fact_ids: list[int]
    passage_ids: list[int]
    route: Route
    reasons: list[str]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "route": self.route.value,
            "reasons": self.reasons,
            "fact_ids": self.fact_ids,
            "passage_ids": self.passage_ids,
        }


__all__ = ["EditResult", "InsertResult"]
