"""The knowledge-preference conflict suite on real MQuAKE edits and the real SmolLM2 model, and the
router's no-relation route (weights + a passage)."""

from __future__ import annotations

import torch
from model_weights import snapshot

from benchmarks.data.loaders import load_mquake
from benchmarks.studies.conflicts import KINDS, build_cases, run_suite, states, summarise
from kedit import KnowledgeLayer, Route

# kinds the hierarchy decides alone (no reading by the model): every case must obey
BY_RULE = ("stored_vs_model", "stored_vs_passage", "instruction_vs_stored", "newer_vs_stale", "as_of_stale")


def test_states_is_article_and_case_insensitive():
    assert states("the United Kingdom.", "United Kingdom")
    assert not states("", "Paris") and not states("Lyon", "Paris")


def test_statements_keep_initials_and_titles_inside_names():
    from kedit.statements import parse_statements
    from memory import RelationVocabulary

    found = parse_statements(
        "Frank R. Strayer is a citizen of Canada. St. Louis is located in the country of France.",
        RelationVocabulary.builtin(),
    )
    assert [(s.subject, s.relation, s.object) for s in found] == [
        ("Frank R. Strayer", "P27", "Canada"),
        ("St. Louis", "P17", "France"),
    ]


def test_conflict_cases_are_built_from_real_edits(data_dir, tmp_path, smollm, embedder):
    cases = load_mquake(data_dir / "MQuAKE", limit=10).cases
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        built = build_cases(cases, kl.store.relations, per_kind=2)
    assert {c.kind for c in built} == set(KINDS)
    for c in built:
        assert c.expected != c.loser and c.question.endswith("?")
    newer = next(c for c in built if c.kind == "newer_vs_stale")
    stale = next(c for c in built if c.kind == "as_of_stale" and c.case_id == newer.case_id)
    assert (newer.expected, newer.loser) == (stale.loser, stale.expected)


def test_conflict_suite_obeys_the_hierarchy(data_dir, smollm, embedder, tmp_path):
    before = snapshot(smollm)
    cases = load_mquake(data_dir / "MQuAKE", limit=10).cases
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        relations = kl.store.relations
    built = build_cases(cases, relations, per_kind=2, kinds=(*BY_RULE, "edited_vs_model"))
    results = run_suite(smollm, built, workdir=tmp_path, embedder=embedder, show_progress=False)
    summary = summarise(results)
    for kind in BY_RULE:
        failed = [
            (r.case.question, r.answer, r.case.expected)
            for r in results
            if r.case.kind == kind and not r.obeys
        ]
        assert not failed, f"{kind}: {failed}"
        assert summary["per_kind"][kind]["tier_ok"] == 1.0
    assert summary["per_kind"]["edited_vs_model"]["obeys"] >= 0.5
    assert all(torch.equal(v, before[k]) for k, v in smollm.model.state_dict().items())  # edits undone


def test_router_edits_and_learns_a_relation_when_no_relation_matches(tmp_path, smollm, embedder):
    before = snapshot(smollm)
    prompt, subject = "Which family does Epaspidoceras belong to?", "Epaspidoceras"
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        rec = kl.edit(prompt, target="Noctuidae", subject=subject)
        assert rec.relation.startswith("L") and kl.store.relations.resolve(rec.relation).source == "learned"
        if rec.verified:
            assert rec.route is Route.BOTH and rec.edit_id is not None
        else:  # an edit that does not verify is undone and only the stored fact stays
            assert rec.route is Route.STORE
        assert kl.store.current(subject, rec.relation).object == "Noctuidae"
        assert kl.query("What family are Epaspidoceras?").text == "Noctuidae"  # ZsRE's paraphrase, in scope
        kl.undo(rec.id)
        assert kl.store.current(subject, rec.relation) is None
    assert all(torch.equal(v, before[k]) for k, v in smollm.model.state_dict().items())


def test_zsre_wording_conflicts_read_the_stored_name_where_the_wording_leaves_it_open(
    data_dir, smollm, embedder, tmp_path
):
    """ZsRE records whose instruction or paraphrase the shortest-subject rule or whole-name linking got
    wrong: "What was the founding year of Sigil Games Online 2002" (subject cut after "Sigil"), "The person
    that is the mother of Prince Karl Johann of Liechtenstein is who …" (a built-in template left a shorter,
    unstored subject), and the paraphrase "Who was Archduchess Mechthildi's Austrian father?" (the name
    spelt otherwise: linked in part)."""
    from benchmarks.data.scope_data import zsre_cases
    from benchmarks.studies.conflicts import build_wording_cases

    subjects = {
        "Sigil Games Online",
        "Prince Karl Johann of Liechtenstein",
        "Archduchess Mechthildis of Austria",
    }
    records = [
        c for c in zsre_cases(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json") if c.subject in subjects
    ]
    built = build_wording_cases(records, per_kind=3, kinds=("instruction_vs_stored",))
    built += [
        c
        for c in build_wording_cases(records, per_kind=3, kinds=("stored_vs_model",))
        if "Mechthildis" in c.case_id
    ]
    assert len(built) == 4
    results = run_suite(smollm, built, workdir=tmp_path, embedder=embedder, show_progress=False)
    failed = [(r.case.kind, r.case.question, r.answer, r.case.expected) for r in results if not r.obeys]
    assert not failed, failed
    assert all(r.tier_ok for r in results)
