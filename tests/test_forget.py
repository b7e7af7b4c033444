"""Forgetting on the real SmolLM2 model and MiniLM: gone from every place kedit keeps it, verified
on what the user sees, and a ledger that keeps that it was forgotten but not what."""

from __future__ import annotations

import json

import pytest
from model_weights import unchanged

from kedit.errors import ForgetError, KeditError, NothingToForgetError
from kedit.forgetting import fingerprint
from kedit.store.evidence import EvidencePool

ZARNAK = "Zarnak Velloria"


def _forget_entry(kl, report) -> dict:
    return next(e for e in kl.history() if e["id"] == report.id)


def test_zarnak_passage_is_gone_from_query_search_and_sessions(kl):
    kl.insert("Zarnak Velloria is a citizen of Portugal. The Velloria archive opened in 1990.", source="news")
    kl.insert("Lisbon is the capital of Portugal.", source="atlas")
    assert "Portugal" in kl.query("Zarnak Velloria is a citizen of").text
    session = EvidencePool(kl.store).run("What is the country of citizenship of Zarnak Velloria?")
    assert session.session_id is not None
    triples = kl.store.stats()["graph_statements"]

    rep = kl.forget(subject=ZARNAK)
    assert rep.objects == ["Portugal"] and len(rep.facts_deleted) == 1
    assert len(rep.passages_redacted) == 1 and rep.passages_deleted == []  # the other sentence is kept
    assert session.session_id in rep.sessions_erased
    assert rep.verified, rep.reasons
    assert "Portugal" not in kl.query("Zarnak Velloria is a citizen of").text
    texts = [h.text for h in kl.store.search("Zarnak Velloria citizen of Portugal", k=10)]
    assert not any("Zarnak" in t for t in texts)
    assert any("archive opened in 1990" in t for t in texts)  # the rest of the passage, re-indexed
    assert any("Lisbon" in t for t in texts)  # other knowledge of Portugal stays
    assert kl.store.evidence_sessions() == []
    assert kl.store.stats()["graph_statements"] == triples - 1  # its triple is gone from the graph
    assert kl.store.neighbours(ZARNAK) == []


def test_a_fact_only_in_a_passage_is_forgotten_not_refused(kl):
    ins = kl.insert("Zarnak Velloria is a citizen of Portugal.", extract_facts=False)
    assert ins.fact_ids == [] and len(ins.passage_ids) == 1
    rep = kl.forget(ZARNAK, "country of citizenship", "Portugal")
    assert rep.facts_deleted == [] and rep.passages_deleted == ins.passage_ids  # nothing left: tombstoned
    assert rep.verified and rep.store_hits == []
    assert kl.store.passages() == []
    assert not any("Zarnak" in h.text for h in kl.store.search("Zarnak Velloria", k=5))


def test_stored_fact_weight_edit_and_passage_go_together(kl, smollm, pristine):
    subject = "Danielle Darrieux"
    rec = kl.edit(f"{subject} is a citizen of", target="Italy", subject=subject)
    assert rec.edit_id is not None and not unchanged(smollm, pristine)
    kl.insert(f"In 1950 {subject} is a citizen of Italy. She starred in many films.", extract_facts=False)
    rep = kl.forget(subject, "country of citizenship", "Italy")
    assert rep.edits_undone == [rec.edit_id] and rep.facts_deleted == [rec.fact_id]
    assert len(rep.passages_redacted) == 1
    assert unchanged(smollm, pristine)  # the weight edit undone exactly
    assert rep.verified, rep.reasons
    assert kl.store.passages()[0].text == "She starred in many films."
    assert kl.store.current(subject, "P27") is None
    edit_line = json.dumps(next(e for e in kl.history() if e["id"] == rec.id))
    assert "Italy" not in edit_line and "[forgotten]" in edit_line and int(rec.id) in rep.ledger_scrubbed


def test_nothing_to_forget_is_a_typed_error_and_changes_nothing(kl, smollm, pristine):
    kl.insert("Lisbon is the capital of Portugal.")
    before = (kl.history(), kl.store.stats(), [p.text for p in kl.store.passages()])
    with pytest.raises(NothingToForgetError):
        kl.forget("Nobody Anyone", "capital", "Nowhere")
    with pytest.raises(NothingToForgetError):
        kl.forget(ZARNAK)
    with pytest.raises(ForgetError):
        kl.forget("   ")
    assert issubclass(NothingToForgetError, KeditError)
    assert (kl.history(), kl.store.stats(), [p.text for p in kl.store.passages()]) == before
    assert unchanged(smollm, pristine)


def test_ledger_keeps_that_it_was_forgotten_not_the_content(kl):
    kl.insert("Zarnak Velloria is a citizen of Portugal. Zarnak Velloria speaks Velorese.")
    rep = kl.forget(ZARNAK, "country of citizenship", "Portugal")
    entry = _forget_entry(kl, rep)
    dumped = json.dumps(entry)
    assert "Portugal" not in dumped and "citizen of" not in dumped
    assert "Portugal" not in json.dumps(kl.history())  # no earlier line keeps it either
    details = entry["details"]
    assert details["kind"] == "forget" and details["relation"] == "P27"
    assert details["fingerprints"] == [fingerprint(ZARNAK, "P27", "Portugal", salt=details["salt"])]
    assert details["fingerprints"] != [fingerprint(ZARNAK, "P27", "Spain", salt=details["salt"])]
    # the sentence that did not state the fact stays
    assert [p.text for p in kl.store.passages()] == ["Zarnak Velloria speaks Velorese."]


def test_verification_report_probes_every_form(kl):
    kl.store.add_fact(ZARNAK, "P27", "Portugal", sentence="Zarnak Velloria holds a passport of Portugal.")
    rep = kl.forget(ZARNAK, "country of citizenship")
    forms = {p["form"] for p in rep.probes}
    assert {"cloze", "question", "fact"} <= forms
    for probe in rep.probes:
        assert probe["object"] == "Portugal"
        for side in ("closed_book_before", "closed_book_after"):
            assert 0.0 <= probe[side]["prob"] <= 1.0 and probe[side]["rank"] >= 0
        assert not probe["closed_book_after"]["yields"] and not probe["query"]["yields"]
        assert probe["query"]["answer"] is not None
    cloze = next(p for p in rep.probes if p["form"] == "cloze")
    assert cloze["prompt"] == "Zarnak Velloria is a citizen of"
    stored = next(p for p in rep.probes if p["form"] == "fact")
    assert stored["prompt"] == "Zarnak Velloria holds a passport of"
    assert stored["query"]["question"] == stored["prompt"]
    assert (
        rep.before[0]["object"] == "Portugal" and rep.after[0]["prob"] == cloze["closed_book_after"]["prob"]
    )
    assert rep.verified and rep.store_hits == [] and rep.unlearn_id is None


def test_model_knowledge_is_unlearned_over_every_probe_and_undo_restores(kl, smollm, pristine):
    kl.store.register_relation(
        "chemical_symbol",
        "chemical symbol",
        cloze="The chemical symbol for {} is",
        question="What is the chemical symbol for {}?",
    )
    rep = kl.forget("gold", "chemical symbol", "Au")
    assert rep.unlearn_id is not None and rep.retain_change is not None
    yielded = [p for p in rep.probes if p["closed_book_before"]["yields"]]
    assert yielded, "the model states Au for gold before"
    for probe in yielded:
        assert probe["closed_book_after"]["prob"] < probe["closed_book_before"]["prob"]
    assert not unchanged(smollm, pristine)
    saved = "".join(f.read_text() for f in (kl.path / "weights").rglob("*.json"))
    assert rep.unlearn_id in saved and '"Au"' not in saved
    kl.undo(rep.id)
    assert unchanged(smollm, pristine)


# -- the forgetting benchmark on a tiny N ---------------------------------------------------------


def test_auc_counts_ties_half():
    from benchmarks.studies.forget_bench import auc

    assert auc([2.0, 3.0], [1.0, 0.0]) == 1.0 and auc([0.0], [1.0]) == 0.0
    assert auc([1.0, 2.0], [0.0, 3.0]) == 0.5 and auc([1.0], [1.0]) == 0.5


def test_forget_bench_on_a_tiny_n(smollm, pristine, data_dir):
    from benchmarks.studies import forget_bench

    rows = json.loads((data_dir / "CounterFact" / "counterfact-val.json").read_text(encoding="utf-8"))
    train = json.loads((data_dir / "CounterFact" / "counterfact-train.json").read_text(encoding="utf-8"))
    facts, scale_facts = forget_bench.known_facts(smollm, rows), forget_bench.known_facts(smollm, train)
    assert len(facts) >= 14 and len(scale_facts) >= 16
    result = forget_bench.run(
        smollm,
        facts,
        n=3,
        scale=5,
        scale_facts=scale_facts,
        requests=3,
        held=3,
        methods=["GU-NPO", "GA"],
        settings={"max_steps": 3, "lr": 1e-3},
        log=lambda _: None,
    )
    assert unchanged(smollm, pristine)  # every run undone
    before, *after = result["six"]
    assert [r["method"] for r in result["six"]] == ["before", "GU-NPO", "GA"]
    assert before["locality_kept"] == before["held_kept"] == 1.0  # kept of those known before
    for row in after:
        assert row["forget_prob"] < before["forget_prob"] and row["steps"] >= 1
        assert 0.0 <= row["mia_auc"] <= 1.0 and 0.0 <= row["locality_kept"] <= 1.0
    assert [(r["method"], r["requests"]) for r in result["scale"]] == [
        ("GU-NPO", 3),
        ("GA", 3),
        ("GU-NPO", 5),
        ("GA", 5),
    ]
    for row in result["scale"][2:]:  # the larger run is measured, on its own (train) facts
        assert row["forget_prob"] < result["scale_before"]["forget_prob"] and 0.0 <= row["held_kept"] <= 1.0
    assert [r["requests"] for r in result["sequential"]] == [3, 3]
    table = forget_bench.markdown(result)
    assert table.count("| GU-NPO |") == 4 and "PrivLeak" in table  # six-way, 2 scale rows, sequential
    with pytest.raises(ValueError, match="scan more records"):
        forget_bench.run(
            smollm,
            facts,
            n=3,
            scale=len(scale_facts),
            scale_facts=scale_facts,
            requests=0,
            held=3,
            methods=["GA"],
            settings={"max_steps": 1, "lr": 1e-3},
            log=lambda _: None,
        )


def test_unlearning_in_chunks_takes_the_same_steps(smollm, pristine, data_dir):
    """A forget set larger than `batch_rows` runs in length-sorted chunks: the same run up to float noise."""
    from benchmarks.studies import forget_bench
    from kedit.unlearning import UnlearnConfig, Unlearner

    rows = json.loads((data_dir / "CounterFact" / "counterfact-val.json").read_text(encoding="utf-8"))
    facts = [(f.prompt, f.object) for f in forget_bench.known_facts(smollm, rows)]
    un = Unlearner(smollm)
    deltas = []
    for rows_per_pass in (128, 3):
        rec = un.forget(facts[:5], facts[5:9], UnlearnConfig(lr=1e-3, max_steps=2, batch_rows=rows_per_pass))
        deltas.append(rec.deltas)
        un.undo(rec)
    assert unchanged(smollm, pristine)
    # Adam's step is about lr·sign(g) for each coordinate: where g is near zero, summing the chunks' gradients
    # in another order moves a few of the 885k entries by ~0.1 % of the largest step (measured: 39-74 of them,
    # the whole difference 6e-5 of the step's norm). A chunk dropped or counted twice moves the norm by O(1).
    for name, whole in deltas[0].items():
        assert float(whole.abs().max()) > 0
        diff = deltas[1][name] - whole
        assert float(diff.norm() / whole.norm()) < 1e-3, name
        assert float(diff.abs().max()) < 1e-2 * float(whole.abs().max()), name


def test_a_batch_edit_holding_other_facts_is_kept_and_the_fact_unlearned(kl):
    a, b = kl.edit_many(
        [
            {
                "prompt": "Danielle Darrieux is a citizen of",
                "target": "Italy",
                "subject": "Danielle Darrieux",
            },
            {"prompt": "Toko Yasuda is a citizen of", "target": "Canada", "subject": "Toko Yasuda"},
        ]
    )
    assert a.edit_id is not None and a.edit_id == b.edit_id
    rep = kl.forget("Danielle Darrieux", "country of citizenship", "Italy")
    assert rep.edits_kept == [a.edit_id] and rep.edits_undone == [] and rep.facts_deleted == [a.fact_id]
    assert kl.weights.find(a.edit_id) is not None  # Toko Yasuda's fact is not taken back with it
    assert rep.unlearn_id is not None  # the batch edit still made the model say Italy
    assert kl.store.current("Toko Yasuda", "P27").object == "Canada"
    lines = {e["id"]: json.dumps(e) for e in kl.history()}
    assert "Italy" not in lines[a.id] and "Canada" in lines[b.id]  # only this subject's line is scrubbed
