"""Export and import: the record as `record.jsonl` (every row, history included) and the graph as RDF.

An import writes through the store's own write methods, so its indexes stay in step; imported facts
get new ids, and the ledger lines that named them are re-pointed at the new ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import graph
import memory
from kedit.store.errors import StoreInputError, StoreNotFoundError, translated
from memory import EditEntry, Fact, NewFact, Passage, Relation

EXPORT_RECORD = "record.jsonl"
_FACT_FIELDS = ("subject", "relation", "object", "sentence", "source", "confidence", "valid_from", "valid_to")


def export(
    record: memory.Record, triples: graph.TripleStore, path: str | Path, *, graph_format: str = "nt"
) -> Path:
    """Write `record.jsonl` and `graph.<nt|ttl>` into directory `path`; returns the directory."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / EXPORT_RECORD, "w", encoding="utf-8") as handle:
        for row in record.dump():
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    suffix = {"turtle": "ttl", "ttl": "ttl"}.get(graph_format, graph_format)
    triples.export(out / f"graph.{suffix}", graph_format)
    return out


class ImportTarget(Protocol):
    """The writes an import goes through (a `KnowledgeStore`)."""

    @property
    def relations(self) -> memory.RelationVocabulary: ...

    def register_relation(
        self,
        id: str,
        label: str,
        *,
        cloze: str,
        question: str,
        functional: bool = True,
        aliases: Sequence[str] = (),
        source: str = "custom",
    ) -> Relation: ...

    def add_aliases(self, canonical: str, aliases: Iterable[str]) -> None: ...

    def add_facts(self, facts: Iterable[NewFact]) -> list[Fact]: ...

    def _tombstone(self, facts: Sequence[Fact]) -> list[Fact]: ...

    def add_document(
        self,
        text: str,
        *,
        source: str,
        title: str | None = None,
        valid_from: Any = None,
        valid_to: Any = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> list[Passage]: ...

    def record_edit(
        self,
        *,
        decision: str,
        reasons: Sequence[str] = (),
        fact_id: int | None = None,
        edit_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> EditEntry: ...


def import_path(store: ImportTarget, path: str | Path, *, source: str = "import") -> list[Fact]:
    """Load an export directory or `record.jsonl`, or RDF statements (`.nt`, `.ttl`, `.nq`, `.trig`)
    as facts. Imported facts get new ids; forgotten ones are imported as forgotten."""
    path = Path(path)
    if path.is_dir():
        path = path / EXPORT_RECORD
    if not path.is_file():
        raise StoreNotFoundError(f"nothing to import at {path}")
    if path.suffix != ".jsonl":
        with translated():
            quads = graph.read_triples(path, source=source)
        return store.add_facts(NewFact(s, r, o, source=src) for s, r, o, src in quads)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise StoreInputError(f"{path.name} line {number} is not JSON: {exc}") from None
    return import_rows(store, rows)


def _fact_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {f: row[f] for f in _FACT_FIELDS if f in row}


def import_rows(store: ImportTarget, rows: list[dict[str, Any]]) -> list[Fact]:
    """Write exported rows: relations and aliases first, then facts, then documents and ledger lines."""
    for row in rows:
        if row.get("type") == "relation" and row["id"] not in store.relations:
            store.register_relation(
                row["id"],
                row["label"],
                cloze=row["cloze"],
                question=row["question"],
                functional=row.get("functional", True),
                aliases=row.get("aliases", ()),
                source=row.get("source", "custom"),
            )
    for row in rows:
        if row.get("type") == "alias":
            store.add_aliases(row["canonical"], [row["alias"]])
    fact_rows = [r for r in rows if r.get("type") == "fact"]
    try:
        new_facts = [
            NewFact(
                **_fact_fields(r), provenance=dict(r.get("provenance") or {}) | {"imported_id": r.get("id")}
            )
            for r in fact_rows
        ]
    except TypeError as exc:
        raise StoreInputError(f"a fact row is malformed: {exc}") from None
    stored = store.add_facts(new_facts)
    id_map = {r.get("id"): f.id for r, f in zip(fact_rows, stored)}
    gone = [f for r, f in zip(fact_rows, stored) if r.get("deleted_at")]
    if gone:
        store._tombstone(gone)
    for row in rows:
        if row.get("type") == "document" and not row.get("deleted_at"):
            store.add_document(
                "\n\n".join(row["passages"]),
                source=row["source"],
                title=row.get("title"),
                valid_from=row.get("valid_from"),
                valid_to=row.get("valid_to"),
                provenance=row.get("provenance"),
            )
        elif row.get("type") == "edit":
            store.record_edit(
                decision=row["decision"],
                reasons=row.get("reasons", ()),
                fact_id=id_map.get(row.get("fact_id")),
                edit_id=row.get("edit_id"),
                details=row.get("details"),
            )
    return stored
