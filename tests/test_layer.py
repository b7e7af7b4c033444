"""The knowledge layer end to end on the real SmolLM2 model and real MiniLM embeddings."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
from model_weights import snapshot, unchanged

from kedit import KnowledgeLayer, Route
from kedit.errors import EditError, KeditError, StoreError
from kedit.layer import Hit, Tier
from kedit.layer import edit as edit_plan

SUBJECT = "Danielle Darrieux"
DATA = Path(__file__).parent / "data"


def test_edit_routes_to_weights_and_store_then_query_and_undo(kl, smollm, pristine):
    rec = kl.edit(f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT)
    assert rec.route is Route.BOTH and rec.verified and rec.relation == "P27"
    assert any("functional" in r for r in rec.reasons)
    assert "Italy" in smollm.complete(f"{SUBJECT} is a citizen of", max_new_tokens=3)
    assert kl.store.current(SUBJECT, "P27").object == "Italy"
    ledger = kl.history()[-1]
    assert ledger["decision"] == "both" and ledger["edit_id"] == rec.edit_id

    kl.insert(subject="Italy", relation="capital", object="Rome", source="atlas")
    ans = kl.query("What is the capital of the country of citizenship of Danielle Darrieux?")
    assert ans.text == "Rome"
    assert [h["answer"] for h in ans.trace["hops"]] == ["Italy", "Rome"]
    assert all(h["tier"] == "stored" for h in ans.trace["hops"])
    assert {e.fact_id for e in ans.evidence} == {rec.fact_id, kl.store.current("Italy", "P36").id}

    out = kl.undo(rec.id)
    assert any("weight change" in a for a in out["actions"])
    assert unchanged(smollm, pristine)  # bit-exact
    assert kl.store.current(SUBJECT, "P27") is None
    with pytest.raises(KeditError, match="already undone"):
        kl.undo(rec.id)


def test_out_of_scope_questions_are_answered_without_the_stored_facts_weight_edits(kl, smollm, pristine):
    # CounterFact val (tests/data sample): the fact and its neighbourhood prompt, another subject
    record = json.loads((DATA / "CounterFact" / "counterfact-val.json").read_text())[0]
    other = record["locality_prompt"]  # "BBC Radio, by"
    before = kl.query(other).text
    rec = kl.edit(record["prompt"], target=record["target_new"], subject=record["subject"])
    assert rec.route is Route.BOTH and rec.verified
    assert not unchanged(smollm, pristine)
    with kl.out_of_scope_weights():  # the stored fact's edit left out: the model as kedit found it
        assert unchanged(smollm, pristine)
    assert not unchanged(smollm, pristine)  # and back in after the block
    answer = kl.query(other)
    assert answer.text == before and "closed_book" in answer.trace
    assert kl.query(record["rephrase_prompt"]).text == record["target_new"]  # in scope: the store answers
    # a weights-only edit (the caller forced it, nothing stored) stays in the weights out of scope too
    forced = kl.edit(f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT, route="parametric")
    assert forced.route is Route.PARAMETRIC and forced.fact_id is None
    with kl.out_of_scope_weights():
        assert not unchanged(smollm, pristine)
    kl.undo(forced.id)
    with kl.out_of_scope_weights():
        assert unchanged(smollm, pristine)
    kl.undo(rec.id)
    assert unchanged(smollm, pristine)


def test_a_routed_batch_is_written_in_parts_with_the_drift_budget_read_between(kl, monkeypatch):
    # three facts the router sends to weights and store; the first moves a locality probe itself
    record = json.loads((DATA / "CounterFact" / "counterfact-val.json").read_text())[0]  # tests/data sample
    items = [
        dict(prompt="The capital of Japan is", target="Kyoto", subject="Japan"),
        dict(prompt=record["prompt"], target=record["target_new"], subject=record["subject"]),
        dict(prompt=f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT),
    ]
    monkeypatch.setattr(edit_plan, "ROUTED_PART", 2)
    kl.drift_budget = 1e-9  # any change to a locality probe's tokens spends it
    first, second, third = kl.edit_many(items)
    assert first.route is second.route is Route.BOTH and first.edit_id == second.edit_id is not None
    assert kl.locality_drift > 0  # read after the first part, before the second
    assert third.route is Route.STORE and third.edit_id is None
    assert "drifted" in third.reasons[-1] and kl.store.current(SUBJECT, "P27").object == "Italy"
    assert len(kl.weights.changes) == 1


def test_router_sends_time_bounded_multivalued_and_known_facts_to_the_store(kl, smollm, pristine):
    timed = kl.edit(
        subject="Italy", relation="head of government", target="Giorgia Meloni", valid_from="2022-10-22"
    )
    assert timed.route is Route.STORE and "time span" in timed.reasons[0]
    office = kl.edit(subject="Croatia", relation="head of state", target="Zoran Milanović")
    assert office.route is Route.STORE and "volatile" in office.reasons[0]
    marked = kl.edit(f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT, volatile=True)
    assert marked.route is Route.STORE and "marked the fact volatile" in marked.reasons[0]
    known = kl.edit("The capital of France is", target="Paris", subject="France")
    assert known.route is Route.STORE and any("already states" in r for r in known.reasons)
    forced = kl.edit(f"{SUBJECT} is a citizen of", target="France", subject=SUBJECT, route="store")
    assert forced.route is Route.STORE and forced.reasons == ["route=store requested by the caller"]
    assert unchanged(smollm, pristine)  # none of these touched the weights


def test_preference_hierarchy_instruction_stored_passage_and_time(kl):
    kl.insert(
        subject="Atlantis",
        relation="capital",
        object="Poseidonia",
        source="old-atlas",
        valid_from="2001-01-01",
    )
    kl.insert(
        subject="Atlantis", relation="capital", object="Meropis", source="new-atlas", valid_from="2020-01-01"
    )
    q = "What is the capital of Atlantis?"
    now = kl.query(q)
    assert now.text == "Meropis" and now.trace["hops"][0]["tier"] == "stored"  # newer valid first
    (stored,) = now.evidence  # the answer's evidence is the store's own type, its row and asserted object
    assert isinstance(stored, Hit) and stored.tier is Tier.STORED and stored.answer == "Meropis"
    assert stored.fact == kl.store.current("Atlantis", "P36") and stored.timestamp.startswith("2020-01-01")
    assert kl.query(q, as_of="2010-06-01").text == "Poseidonia"  # as of then
    told = kl.query(q, instructions="Assume the capital of Atlantis is Thule.")
    assert told.text == "Thule" and told.trace["winner"]["tier"] == "instruction"
    said = told.evidence[0]
    assert (
        said.tier is Tier.INSTRUCTION and said.answer == "Thule" and said.fact_id is said.passage_id is None
    )
    assert "outranks" in told.trace["hops"][0]["why"]

    kl.insert(
        "The Eiffel Tower was repainted in 2026 in a golden brown.", source="news", valid_from="2026-01-01"
    )
    ans = kl.query("When was the Eiffel Tower repainted?")
    assert ans.trace["winner"]["tier"] == "passage"
    passage = next(e for e in ans.evidence if e.passage_id is not None)
    # the very hit retrieval handed out (same row, score and provenance), with what was read from it
    assert passage.answer and passage.answer in passage.text
    read = dataclasses.replace(passage, answer=None)
    assert read in kl.store.search("When was the Eiffel Tower repainted?", kinds=("passage",))
    assert ans.to_dict()["evidence"][0]["passage_id"] == passage.id
    with pytest.raises(KeditError, match="non-empty question"):
        kl.query("   ")


@pytest.mark.parametrize(
    "passage, question, answer",
    [  # the conflict suite's free passages (MQuAKE dev relations) the model read from its memory before
        ("Records list Tetris's creator as Mark Burnett.", "Who was Tetris created by?", "Mark Burnett"),
        (
            "Records list Spain's official language as Arabic.",
            "What is the official language of Spain?",
            "Arabic",
        ),
        (  # answered "The answer is:" (a preamble line) before
            "Southern hip hop was created in the country of Czechoslovakia.",
            "Which country was Southern hip hop created in?",
            "Czechoslovakia",
        ),
    ],
)
def test_a_passage_is_read_extractively(tmp_path, smollm, passage, question, answer):
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm) as kl:
        kl.insert(passage, source="web", extract_facts=False)
        got = kl.query(question)
    assert got.text == answer
    assert any(e.tier is Tier.PASSAGE and e.answer == answer for e in got.evidence)


def test_bad_input_changes_nothing(kl, smollm, pristine):
    kl.insert(subject="Atlantis", relation="capital", object="Meropis")
    before = kl.history()
    with pytest.raises(EditError, match="contradictory"):
        kl.edit_many(
            [
                {"subject": "Atlantis", "relation": "capital", "target": "Thule"},
                {"subject": "Atlantis", "relation": "capital", "target": "Meropis"},
            ]
        )
    with pytest.raises(EditError, match="non-empty target"):
        kl.edit(f"{SUBJECT} is a citizen of", target="  ", subject=SUBJECT)
    with pytest.raises(StoreError, match="unknown relation"):
        kl.insert(subject="Atlantis", relation="favourite colour of the moon", object="blue")
    with pytest.raises(KeditError, match="nothing to forget"):
        kl.forget("Nobody Anyone", "capital", "Nowhere")
    assert kl.history() == before
    assert unchanged(smollm, pristine)


def test_forget_undoes_the_edit_that_wrote_the_fact(kl, smollm, pristine):
    rec = kl.edit(f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT)
    assert rec.route is Route.BOTH
    rep = kl.forget(SUBJECT, "country of citizenship", "Italy")
    assert rep.edits_undone == [rec.edit_id] and rep.facts_deleted == [rec.fact_id]
    assert rep.verified and rep.after[0]["rank"] > 0
    assert unchanged(smollm, pristine)
    assert kl.store.history(SUBJECT, "P27")[0].deleted  # history keeps that it was forgotten


def test_forget_unlearns_what_the_model_itself_knows_and_undo_restores(kl, smollm, pristine):
    kl.store.register_relation(
        "chemical_symbol",
        "chemical symbol",
        cloze="The chemical symbol for {} is",
        question="What is the chemical symbol for {}?",
    )
    rep = kl.forget("gold", "chemical symbol", "Au")
    assert rep.unlearn_id is not None
    assert rep.after[0]["prob"] < rep.before[0]["prob"] / 5
    assert rep.retain_change is not None
    assert not unchanged(smollm, pristine)
    kl.undo(rep.id)
    assert unchanged(smollm, pristine)


def test_reopen_reapplies_edits_and_middle_undo(tmp_path, smollm, pristine, embedder):
    kb = tmp_path / "kb"
    with KnowledgeLayer.open(kb, model=smollm, embedder=embedder) as kl:
        a = kl.edit(f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT)
        b = kl.edit("Toko Yasuda is a citizen of", target="Canada", subject="Toko Yasuda")
        after_both = snapshot(smollm)
    for change in reversed(kl.weights.changes):  # simulate a fresh process: pristine model
        kl.weights.editor.undo(change.record)
    assert unchanged(smollm, pristine)
    kl2 = KnowledgeLayer.open(kb, model=smollm, embedder=embedder)
    try:
        assert [c.id for c in kl2.weights.changes] == [a.edit_id, b.edit_id]
        assert unchanged(smollm, after_both)  # re-applied bit-identically
        kl2.undo(a.id)  # the older edit: later one undone, this one removed, later one re-applied
        assert [c.id for c in kl2.weights.changes] == [b.edit_id]
        assert "Canada" in smollm.complete("Toko Yasuda is a citizen of", max_new_tokens=3)
        kl2.undo(b.id)
        assert unchanged(smollm, pristine)
    finally:
        kl2.close()


def test_unsupported_architecture_falls_back_to_store(tmp_path, smollm, embedder):
    from transformers import OPTConfig, OPTForCausalLM

    from kedit.runtime import load_model

    model_dir = tmp_path / "tiny-opt"
    config = OPTConfig(
        vocab_size=len(smollm.tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        max_position_embeddings=64,
    )
    OPTForCausalLM(config).save_pretrained(model_dir, safe_serialization=True)
    smollm.tokenizer.save_pretrained(model_dir)
    bundle = load_model(model_dir)
    assert bundle.spec is None and "OPTForCausalLM" in bundle.extra["spec_error"]
    with (
        KnowledgeLayer.open(tmp_path / "kb", model=bundle, embedder=embedder) as kl,
        warnings.catch_warnings(record=True) as seen,
    ):
        warnings.simplefilter("always")
        rec = kl.edit(f"{SUBJECT} is a citizen of", target="Italy", subject=SUBJECT)
    assert rec.route is Route.STORE and "cannot be edited" in rec.reasons[0]
    assert any("cannot be edited" in str(w.message) for w in seen)


def test_langchain_retriever_and_runnable_in_an_lcel_chain(kl):
    from langchain_core.runnables import RunnableLambda

    kl.insert(subject="Atlantis", relation="capital", object="Meropis", source="atlas")
    retriever = kl.as_retriever(k=2)
    chain = retriever | RunnableLambda(lambda docs: [d.page_content for d in docs])
    assert "The capital of Atlantis is Meropis." in chain.invoke("capital city of Atlantis")
    docs = retriever.invoke("capital city of Atlantis")
    assert docs[0].metadata["tier"] == "stored" and docs[0].metadata["source"] == "atlas"
    assert (
        docs[0].metadata["kind"] == "fact"
        and docs[0].metadata["id"] == kl.store.current("Atlantis", "P36").id
    )
    qa = RunnableLambda(lambda x: x["question"]) | kl.as_runnable()
    assert qa.invoke({"question": "What is the capital of Atlantis?"}) == "Meropis"


def test_a_closed_book_hop_that_echoes_its_subject_is_asked_again(kl, smollm):
    # MQuAKE dev case 0's chain: SmolLM2 answers "Who is the head of state of Croatia?" with "Croatia".
    # The hop is asked again with "Croatia" banned as the first answer token (docs/methods.md §7).
    kl.insert(subject="Ellie Kemper", relation="country of citizenship", object="Croatia", source="test")
    ans = kl.query("Who is the head of state of the country where Ellie Kemper holds a citizenship?")
    hops = ans.trace["hops"]
    assert [h["subject"] for h in hops][:2] == ["Ellie Kemper", "Croatia"] and hops[0]["answer"] == "Croatia"
    assert hops[1]["relation"] == "P35" and hops[1]["tier"] in ("parametric", None)
    assert hops[1]["answer"] is None or hops[1]["answer"].lower() != "croatia"  # not its subject again
