"""The ledger's verbs: `undo` one entry, read the `history`, `show` one entry."""

from __future__ import annotations

from kedit.errors import KeditError
from kedit.router import Route


def undo(layer, entry_id: str | int) -> dict:
    """Take back one ledger entry: its weight change (exactly) and the facts it stored."""
    entries = {str(e.id): e for e in layer.store.ledger}
    entry = entries.get(str(entry_id))
    if entry is None:
        raise KeditError(f"no ledger entry {entry_id!r} (see `history()`)")
    if entry.decision == "undo":
        raise KeditError(f"ledger entry {entry_id} is itself an undo")
    if any(e.decision == "undo" and e.details.get("undoes") == entry.id for e in entries.values()):
        raise KeditError(f"ledger entry {entry_id} was already undone")
    done = []
    if entry.edit_id and layer.weights.find(entry.edit_id):
        layer.weights.remove(entry.edit_id)
        done.append(f"weight change {entry.edit_id} undone")
        layer._measure_drift()
    fact_ids = list(entry.details.get("fact_ids") or ([entry.fact_id] if entry.fact_id else []))
    if entry.decision != Route.REMOVE.value:
        for fid in fact_ids:
            if not layer.store.fact(fid).deleted:
                layer.store.delete_fact(fid)
                done.append(f"fact {fid} tombstoned")
    passage_ids = set(entry.details.get("passage_ids") or [])
    if passage_ids and entry.decision != Route.REMOVE.value:
        documents = {
            p.document_id for p in layer.store.passages() if p.id in passage_ids and not p.deleted_at
        }
        for document_id in sorted(documents):
            layer.store.delete_document(document_id)
            done.append(f"document {document_id} deleted")
    if not done:
        done.append("nothing live left to take back")
    layer.store.record_edit(decision="undo", reasons=done, details={"kind": "undo", "undoes": entry.id})
    return {"undone": str(entry.id), "actions": done}


def history(layer) -> list[dict]:
    """The ledger, oldest first: every edit, insert, forget and undo with its route and reasons."""
    return [
        {
            "id": str(e.id),
            "decision": e.decision,
            "reasons": e.reasons,
            "fact_id": e.fact_id,
            "edit_id": e.edit_id,
            "kind": e.details.get("kind"),
            "created_at": e.created_at,
            "details": e.details,
        }
        for e in layer.store.ledger
    ]


def show(layer, entry_id: str | int) -> dict:
    for item in layer.history():
        if item["id"] == str(entry_id):
            if item["fact_id"]:
                fact = layer.store.fact(item["fact_id"])
                item["fact"] = {
                    "subject": fact.subject,
                    "relation": fact.relation,
                    "object": fact.object,
                    "sentence": fact.sentence,
                    "deleted_at": fact.deleted_at,
                }
            item["live_weight_change"] = bool(item["edit_id"] and layer.weights.find(item["edit_id"]))
            return item
    raise KeditError(f"no ledger entry {entry_id!r}")


__all__ = ["history", "show", "undo"]
