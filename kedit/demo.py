"""`kedit demo`: the whole story on a real model, printed step by step.

1. load the model and show what it answers closed-book;
2. edit a fact into the weights (the router picks weights + store) and verify it;
3. insert a fact and a dated passage into the store;
4. ask a multi-hop question answered through the graph chain, with evidence and the preference trace;
5. an instruction overrides the stored fact;
6. forget the edited fact (weight edit undone, record tombstoned) and show the answer falls back;
7. undo the insert, and print the ledger.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SUBJECT = "Danielle Darrieux"
CLOSED_BOOK = [
    "The capital of France is",
    "Danielle Darrieux is a citizen of",
    "The capital of Italy is",
    "The chemical symbol for gold is",
]
MULTI_HOP = "What is the capital of the country of citizenship of Danielle Darrieux?"


def _answer_table(console: Console, ans) -> None:
    tr = ans.trace
    console.print(f"  answer: [bold]{ans.text}[/]   (winner: {tr['winner']['label']})")
    for hop in tr.get("hops", []):
        console.print(
            f"    hop ({hop['subject']}, {hop['relation_label']}) → [bold]{hop['answer']}[/] "
            f"from {hop['tier']}: {hop['why']}"
        )
    table = Table("tier", "evidence", "source", "fact/passage id", show_edge=False)
    for e in ans.evidence:
        table.add_row(e.tier.label, e.text[:80], e.source, str(e.fact_id or e.passage_id or ""))
    console.print(table)


def run_demo(console: Console, model: str, kb: Path) -> None:
    from kedit.layer import KnowledgeLayer
    from kedit.runtime import load_model

    console.rule("1. load the model")
    with console.status(f"loading {model} ..."):
        bundle = load_model(model)
    how = "from the safetensors cache" if bundle.from_cache else "from GGUF (dequantised, now cached)"
    console.print(
        f"[bold]{bundle.name}[/] ({bundle.spec.family if bundle.spec else 'no edit spec'}) loaded in {bundle.load_seconds:.2f} s {how}"
    )
    table = Table("prompt", "model's greedy completion")
    for prompt in CLOSED_BOOK:
        table.add_row(prompt, bundle.complete(prompt, max_new_tokens=8).strip().split("\n")[0])
    console.print(table)

    with KnowledgeLayer.open(kb, model=bundle) as kl:
        console.rule("2. edit: Danielle Darrieux becomes a citizen of Italy")
        t0 = time.perf_counter()
        with console.status(
            "probe → route → AlphaEdit edit → verify (a model's first weight edit computes its key statistics, once: ~2 min) ..."
        ):
            rec = kl.edit(f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT)
        console.print(f"  route [bold]{rec.route.value}[/] in {time.perf_counter() - t0:.1f} s; reasons:")
        for reason in rec.reasons:
            console.print(f"    · {reason}")
        for v in rec.verification:
            console.print(
                f"  P(Italy): {v['before']['prob']:.3f} → {v['after']['prob']:.3f}; "
                f"teacher-forced accuracy {v['before']['accuracy']:.2f} → {v['after']['accuracy']:.2f}"
            )
        console.print(
            f"  closed-book now: '{SUBJECT} is a citizen of' → "
            f"{bundle.complete(f'{SUBJECT} is a citizen of', max_new_tokens=4).strip()!r}"
        )

        console.print()
        console.rule("3. insert: a structured fact and a dated passage")
        ins = kl.insert(subject="Italy", relation="capital", object="Rome", source="atlas")
        console.print(f"  fact (Italy, capital, Rome) → store, ledger #{ins.id}")
        doc = kl.insert("The Eiffel Tower was repainted in 2026.", source="news", valid_from="2026-01-01")
        console.print(
            f"  passage 'The Eiffel Tower was repainted in 2026.' (valid from 2026-01-01) → ledger #{doc.id}"
        )

        console.rule("4. multi-hop query with evidence")
        console.print(f"  Q: {MULTI_HOP}")
        _answer_table(console, kl.query(MULTI_HOP))
        console.print("  Q: When was the Eiffel Tower repainted?")
        _answer_table(console, kl.query("When was the Eiffel Tower repainted?"))

        console.rule("5. a user instruction outranks the stored fact")
        instruction = f"Assume that {SUBJECT} is a citizen of Spain."
        console.print(f"  instruction: {instruction}")
        _answer_table(console, kl.query(MULTI_HOP, instructions=instruction))

        console.rule("6. forget the edited fact")
        with console.status("tombstone → undo the weight edit → verify ..."):
            rep = kl.forget(SUBJECT, "country of citizenship", "Italy")
        for reason in rep.reasons:
            console.print(f"    · {reason}")
        for b, a in zip(rep.before, rep.after):
            console.print(
                f"  P({b['object']}) {b['prob']:.3f} (rank {b['rank']}) → {a['prob']:.3f} (rank {a['rank']})"
            )
        console.print(f"  verified gone: {rep.verified}")
        console.print(f"  Q again: {MULTI_HOP}")
        _answer_table(console, kl.query(MULTI_HOP))

        console.rule("7. undo the insert, and the ledger")
        console.print(f"  undo #{ins.id}: {kl.undo(ins.id)['actions']}")
        table = Table("id", "kind", "route", "reasons", show_edge=False)
        for row in kl.history():
            table.add_row(row["id"], row["kind"] or "", row["decision"], "; ".join(row["reasons"])[:90])
        console.print(table)
