"""Open-vocabulary scope on real records (CounterFact, ZsRE, MQuAKE samples in tests/data): linking,
learned relations, in/out of scope, and the `layer` adapter's use of the same decision."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.data.scope_data import counterfact_cases, distinct_subjects, zsre_cases
from kedit import KnowledgeLayer
from kedit.scope import learned_relation

N = 12  # facts per store: enough subjects for links to compete, small enough for the suite


def _norm(text):
    return " ".join((text or "").casefold().split()).strip(" .")


@pytest.fixture(scope="module")
def cf_cases(data_dir):
    return distinct_subjects(counterfact_cases(data_dir / "CounterFact" / "counterfact-val.json"))[:N]


@pytest.fixture(scope="module")
def zsre(data_dir):
    return [
        c
        for c in distinct_subjects(zsre_cases(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json"))
        if c.same_subject_out
    ][:N]


@pytest.fixture(scope="module")
def stores(tmp_path_factory, smollm, embedder, cf_cases, zsre):
    """A knowledge base holding the CounterFact and ZsRE facts (store route), and an empty one."""
    kl = KnowledgeLayer.open(tmp_path_factory.mktemp("scope") / "kb", model=smollm, embedder=embedder)
    empty = KnowledgeLayer.open(
        tmp_path_factory.mktemp("scope-empty") / "kb", model=smollm, embedder=embedder
    )
    cases = cf_cases + zsre
    kl.edit_many([dict(prompt=c.prompt, target=c.target, subject=c.subject) for c in cases], route="store")
    yield kl, empty
    kl.close()
    empty.close()


def test_subjects_are_linked_by_the_stores_names_not_by_their_shape(stores):
    kl, _ = stores
    kl.insert(subject="andy kershaw", relation="P27", object="United Kingdom")
    found = kl.scope.link("Every morning, ANDY KERSHAW's bus takes him to work at")
    assert [m.entities for m in found] == [("andy kershaw",)]
    assert kl.scope.link("Calder Freeway, in") == []  # not stored: no guess from capitals
    assert kl.scope.link("The mother tongue of Léon Blum is") == []


def test_an_unknown_wording_defines_a_learned_relation_that_persists(tmp_path, smollm, embedder):
    path = tmp_path / "kb"
    with KnowledgeLayer.open(path, model=smollm, embedder=embedder) as kl:
        first = kl.edit("Calder Freeway, in", target="Kerala", subject="Calder Freeway", route="store")
        assert first.relation == learned_relation("{}, in").id
        kl.edit("Calder Freeway, in", target="Victoria", subject="Calder Freeway", route="store")
        # supersession: the newer value of the learned relation is the one in force and the one answered
        assert kl.store.current("Calder Freeway", first.relation).object == "Victoria"
        assert kl.query("Calder Freeway, in").text == "Victoria"
        # an instruction in the learned template's words outranks the stored fact
        told = kl.query("Calder Freeway, in", instructions="Assume Calder Freeway, in Tasmania.")
        assert told.text == "Tasmania" and told.trace["winner"]["tier"] == "instruction"
        exported = kl.store.export(tmp_path / "export")
    with KnowledgeLayer.open(path, model=smollm, embedder=embedder) as kl:
        assert kl.store.relations.resolve(first.relation).source == "learned"
        assert kl.store.current("Calder Freeway", first.relation).object == "Victoria"
    rows = [json.loads(line) for line in (exported / "record.jsonl").open()]
    assert any(r.get("type") == "relation" and r["id"] == first.relation for r in rows)


def test_a_learned_relation_forms_a_chain(tmp_path, smollm, embedder):
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        rel = kl.edit("Calder Freeway, in", target="Kerala", subject="Calder Freeway", route="store").relation
        kl.insert(subject="Kerala", relation="P36", object="Thiruvananthapuram")
        walk = kl.store.chain("Calder Freeway", [rel, "P36"])
        assert [f.object for f in walk] == ["Kerala", "Thiruvananthapuram"]


def test_edit_prompts_are_answered_from_the_store(stores, cf_cases, zsre):
    kl, _ = stores
    cases = cf_cases + zsre
    answers = kl.query_many([c.prompt for c in cases])
    assert [a.text for a in answers] == [c.target.strip() for c in cases]
    assert all(a.trace["scope"]["in_scope"] is not None for a in answers)


def test_paraphrases_are_mostly_in_scope(stores, cf_cases, zsre):
    kl, _ = stores
    cases = cf_cases + zsre
    answers = kl.query_many([c.in_scope[1] for c in cases])
    hits = sum(_norm(a.text) == _norm(c.target) for a, c in zip(answers, cases))
    assert hits >= 0.75 * len(cases), [(c.in_scope[1], a.text) for a, c in zip(answers, cases)]


def test_out_of_scope_prompts_are_answered_as_with_an_empty_knowledge_base(stores, cf_cases, zsre):
    kl, empty = stores
    other_subject = [q for c in cf_cases for q in c.other_subject]
    same_subject = [q for c in zsre for q in c.same_subject_out]
    for prompts, floor in ((other_subject, 1.0), (same_subject, 0.8)):
        got, want = kl.query_many(prompts), empty.query_many(prompts)
        same = sum(_norm(g.text) == _norm(w.text) for g, w in zip(got, want))
        assert same >= floor * len(prompts), [(p, g.text, w.text) for p, g, w in zip(prompts, got, want)]


def test_layer_adapter_reads_a_probe_as_query_does(smollm, embedder, cf_cases):
    from benchmarks.data.cases import FactEdit
    from benchmarks.methods.layer import LayerMethod, answered_score
    from kedit.scoring import score_targets

    method = LayerMethod(smollm, route="store", embedder=embedder)
    try:
        case = cf_cases[0]
        applied = method.apply(
            [FactEdit(case.prompt.replace(case.subject, "{}", 1), case.subject, case.target, None)]
        )
        assert applied.error is None
        assert method.retrieve(case.prompt) and case.target in method.retrieve(case.prompt)[0]
        assert method.retrieve(case.other_subject[0]) == []  # another subject: no context at all
        # the edit prompt is answered by preference with the stored target (as kl.query answers it),
        # and scored on that answer; an unrelated prompt is scored on the model alone
        answered, other = method.score([case.prompt, case.other_subject[0]], [case.target, case.old])
        assert answered.accuracy == 1.0 and answered.logprob == 0.0
        assert other == score_targets(smollm, [case.other_subject[0]], [case.old])[0]
        wrong = answered_score(smollm.tokenizer, case.prompt, case.old, case.target)
        assert wrong.accuracy < 1.0 and wrong.logprob == float("-inf")
        method.undo(applied)
    finally:
        method.close()


def test_text_naming_nothing_known_is_kept_as_a_passage_with_a_warning(tmp_path, smollm, embedder):
    from kedit.errors import UnparsedTextWarning

    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        with pytest.warns(UnparsedTextWarning, match="names no stored entity"):
            res = kl.insert("Zarnak Velloria hums to the tides every evening.")
        assert res.fact_ids == [] and len(res.passage_ids) == 1
        assert any("passage only" in r for r in res.reasons)


def test_an_ambiguous_name_is_resolved_by_the_asked_relation_and_reported(tmp_path, smollm, embedder):
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.insert(subject="Paris", relation="P17", object="France")
        kl.insert(subject="Paris (Texas)", relation="P131", object="Lamar County")
        kl.store.add_aliases("Paris (Texas)", ["Paris"])
        asked = kl.store.relations.resolve("P131").cloze.format("Paris")
        decision = kl.in_scope(asked)
        assert set(decision.mentions[0].entities) == {"Paris", "Paris (Texas)"}
        assert decision.to_dict()["mentions"][0]["ambiguous"] is True
        assert decision.fact.object == "Lamar County"


def test_the_scope_head_keeps_a_named_other_relation_out_and_reads_its_own(stores):
    kl, _ = stores
    kl.edit("What was Marie Gruber's occupation?", target="novelist", subject="Marie Gruber", route="store")
    kl.insert(subject="Marie Gruber", relation="P19", object="Linz")
    assert kl.in_scope("Which job did Marie Gruber have?").fact.object == "novelist"
    assert kl.in_scope("The occupation of Marie Gruber is").fact.object == "novelist"  # the label wording
    asked = kl.in_scope("Marie Gruber head coach")  # another relation, named in the label form
    assert all(c.fact.object != "novelist" for c in asked.in_scope)


def test_a_question_that_nests_hops_is_answered_from_the_walked_in_scope_facts(tmp_path, smollm, embedder):
    from kedit.readings import nests_hops
    from kedit.scope import ScopeConfig, ScopeModel

    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.edit("Ellie Kemper is a citizen of", target="Croatia", subject="Ellie Kemper", route="store")
        kl.insert(subject="Croatia", relation="P35", object="Kolinda Grabar-Kitarović")
        kl.insert(subject="Croatia", relation="P36", object="Zagreb")
        nested = "Who is the head of state of the country that Ellie Kemper is a citizen of?"
        assert nests_hops(nested, kl.in_scope(nested))
        one_hop = "What is the name of the country that Ellie Kemper is a citizen of?"
        assert not nests_hops(one_hop, kl.in_scope(one_hop))
        walked = ScopeModel(kl.store, ScopeConfig(threshold=0.01)).walk(kl.in_scope(nested))
        assert [c.fact.object for c in walked][:1] == ["Croatia"]
        assert {c.fact.relation for c in walked[1:]} <= {"P35", "P36"}
        # no relation cue for the outer hop: no chain is read, the question is answered from the walk
        uncued = (
            "In what city is the seat of government of the country where Ellie Kemper holds a citizenship?"
        )
        answer = kl.query(uncued)
        assert answer.trace["chain_start"] == "walk", answer.trace
        used = {e.fact_id for e in answer.evidence if e.fact_id is not None}
        assert used and used <= {c.fact.id for c in kl.scope.walk(kl.in_scope(uncued))}  # nothing else enters


def test_the_cross_encoder_ships_small_and_reads_the_pair_together(zsre, cf_cases):
    from kedit.scope.cross import CROSS_PATH, default_cross
    from kedit.scope.text import masked_template, relation_template

    # the fitted top layers in float16, not the whole model: 2 layers are 7.1 MB, 3 are 10.6 MB, 4 (the
    # shipped fit: the 3-layer one kept fewer other relations out, benchmarks/LAYER.md "Fifth pass") 14.2 MB
    assert CROSS_PATH.stat().st_size < 16_000_000
    cross = default_cross()
    assert cross.meta["held_out"]["auc"] > 0.9  # fitted figures travel with the weights

    def form(case, text):
        return masked_template(relation_template(text, case.subject))

    # paraphrases of the stored prompt score above the threshold more often than other relations do
    para = [float(cross.logits(form(c, c.in_scope[1]), [form(c, c.prompt)])[0]) for c in cf_cases + zsre]
    other = [
        float(cross.logits(form(c, q), [form(c, c.prompt)])[0]) for c in zsre for q in c.same_subject_out
    ]
    assert sum(s >= cross.threshold for s in para) >= 0.75 * len(para), para
    assert sum(s < cross.threshold for s in other) >= 0.75 * len(other), other


def test_scope_decisions_on_real_records(stores, cf_cases, zsre):
    kl, _ = stores

    def in_scope_of(case, text):
        fact = kl.in_scope(text).fact
        return fact is not None and fact.subject == case.subject and _norm(fact.object) == _norm(case.target)

    para_cf = sum(in_scope_of(c, c.in_scope[1]) for c in cf_cases)
    para_zsre = sum(in_scope_of(c, c.in_scope[1]) for c in zsre)
    other_cf = [in_scope_of(c, q) for c in cf_cases for q in c.same_subject_out]
    other_zsre = [in_scope_of(c, q) for c in zsre for q in c.same_subject_out]
    # measured 11 of 12 and 9 of 12 (two ZsRE rephrasings do not name the subject as stored), none out in
    assert para_cf >= 0.8 * len(cf_cases) and para_zsre >= 0.65 * len(zsre), (para_cf, para_zsre)
    assert sum(other_cf) <= 0.25 * len(other_cf) and sum(other_zsre) <= 0.2 * len(other_zsre), (
        other_cf,
        other_zsre,
    )


def test_zsre_prompts_that_ask_the_edited_relation_are_kept_apart(data_dir):
    cases = zsre_cases(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json")
    split = [c for c in cases if c.same_relation_labels]
    assert split, "the sample holds ZsRE records whose Relation_Specificity asks the edited relation"
    for c in split:
        assert not set(c.same_relation_labels) & set(c.same_subject_out)


def test_a_misspelt_stored_subject_is_linked(tmp_path, smollm, embedder):
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.edit(
            "Which team did Derek Whitehead play for?",
            target="Rotherham United",
            subject="Derek Whitehead",
            route="store",
        )
        kl.insert(subject="Gregory XVI", relation="P19", object="Belluno")
        assert [m.entities for m in kl.scope.link("What was the name of the Derek Whiteheads team?")] == [
            ("Derek Whitehead",)
        ]
        assert kl.scope.link("Gregory X was born in") == []  # a different code is a different name


def test_the_cross_encoder_can_be_turned_off(stores, zsre):
    from kedit.scope import ScopeConfig, ScopeModel
    from kedit.scope.head import default_head

    kl, _ = stores
    head_only = ScopeModel(kl.store, ScopeConfig(cross_top=0))
    assert head_only.cross is None and head_only.threshold == pytest.approx(
        1 / (1 + math.exp(-default_head().threshold))
    )
    asked = [q for c in zsre for q in c.same_subject_out][:4]
    both = [c for q in asked for c in kl.scope.decide(q).candidates]
    alone = [c for q in asked for c in head_only.decide(q).candidates]
    assert both and all("cross" in c.features for c in both)  # the second stage scored every candidate
    assert len(alone) == len(both) and not any("cross" in c.features for c in alone)
    with pytest.raises(ValueError, match="cross_top"):
        ScopeConfig(cross_top=-1)


def test_a_question_through_a_stored_value_reads_its_fact(tmp_path, smollm, embedder, data_dir):
    """ZsRE's portability questions that name the new value: an inverse question ("Who is the son of
    Gabrielle Bordaberry?") reads the fact holding it; a question naming its in-scope fact's value ("In which
    tier did X compete after joining the USL First Division?") is not answered with that value."""
    from benchmarks.data.loaders import load_knowedit

    cases = load_knowedit(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json", kind="zsre").cases
    names = lambda c, q: c.target_new.strip().casefold() in q.casefold()  # noqa: E731
    inverse = [
        (qa.prompt, qa.answers, c)
        for c in cases
        for qa in c.portability.get("Logical_Generalization", ())
        if names(c, qa.prompt) and c.subject.casefold() in qa.answer.casefold()
    ]
    through = [
        (qa.prompt, c)
        for c in cases
        for qa in c.portability.get("Reasoning", ())
        if names(c, qa.prompt) and c.subject in qa.prompt
    ]
    assert len(inverse) >= 8 and len(through) >= 8
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.edit_many(
            [dict(prompt=c.prompt, target=c.target_new, subject=c.subject) for c in cases], route="store"
        )
        readings = [kl.read_scope(q) for q, _, _ in inverse]
        assert sum(r.origin == "named object" for r in readings) >= len(inverse) - 1
        answers = kl.query_many([q for q, _, _ in inverse])
        right = [_norm(c.subject) in _norm(a.text) for a, (_, _, c) in zip(answers, inverse)]
        assert sum(right) >= 0.7 * len(inverse), [a.text for a in answers]
        for q, c in through:  # never answered by preference with the value the question names
            reading = kl.read_scope(q)
            assert not (reading.origin == "scope" and _norm(reading.scope.fact.object) == _norm(c.target_new))


def test_nested_questions_are_told_from_one_hop_ones_on_three_sources(data_dir):
    """`nests_hops` on the sample's real wordings (no model): a one-hop question read as nesting loses its
    by-preference answer, a nested one missed is answered with its first hop's value."""
    from benchmarks.studies.nested_hops import main as nested_hops

    found = nested_hops(["--data", str(data_dir)])
    one_hop = [v for v in found.values() if not v["nested"]]
    assert sum(v["read_as_nested"] for v in one_hop) <= 0.01 * sum(v["n"] for v in one_hop)
    assert found["MQuAKE dev multi-hop questions"]["share"] >= 0.5
    assert found["KnowEdit ZsRE dev Reasoning"]["share"] >= 0.3  # "Who founded the company that ...?"
    assert found["KnowEdit wiki_recent Reasoning"]["share"] >= 0.8  # "... the country X is associated with"


def test_layer_adapter_scores_a_question_through_a_stored_value_on_querys_answer(smollm, embedder, data_dir):
    """ "Who is the son of X?" read through "Y's father is X": `kl.query` answers with a span of the
    fact's subject, and the adapter scores that answer, not the model's free continuation."""
    from benchmarks.data.cases import FactEdit
    from benchmarks.data.loaders import load_knowedit
    from benchmarks.methods.layer import LayerMethod, answered_score

    cases = load_knowedit(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json", kind="zsre").cases
    question, case = next(
        (qa.prompt, c)
        for c in cases
        for qa in c.portability.get("Logical_Generalization", ())
        if c.target_new.strip().casefold() in qa.prompt.casefold()
        and c.subject.casefold() in qa.answer.casefold()
    )
    method = LayerMethod(smollm, route="store", embedder=embedder)
    try:
        method.apply([FactEdit(case.prompt.replace(case.subject, "{}", 1), case.subject, case.target_new)])
        assert method.kl.read_scope(question).origin == "named object"
        answer = method.kl.query(question).text
        assert _norm(answer) == _norm(case.subject)  # the fact's subject, whole
        [scored] = method.score([question], [case.subject])
        assert scored == answered_score(smollm.tokenizer, question, answer, case.subject)
        assert scored.accuracy == 1.0
    finally:
        method.close()


def test_a_prompt_that_sets_the_stored_value_aside_is_not_answered_with_it(
    tmp_path, smollm, embedder, data_dir
):
    """KnowEdit's Forgetfulness prompts ("The occupation of X, which is not V, is") ask for another value
    of the edited relation: the fact holding V is out of scope and is not the answer."""
    records = json.loads(
        (data_dir / "KnowEdit" / "wiki_counterfact" / "train_cf-dev.json").read_text(encoding="utf-8")
    )
    cases = [r for r in records if (r.get("locality") or {}).get("Forgetfulness")][:4]
    assert len(cases) >= 3
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.edit_many(
            [dict(prompt=r["prompt"], target=r["target_new"], subject=r["subject"]) for r in cases],
            route="store",
        )
        for r in cases:
            assert kl.in_scope(r["prompt"]).fact.object == r["target_new"]  # the edit prompt itself is
            aside = r["locality"]["Forgetfulness"][0]["prompt"]
            decision = kl.in_scope(aside)
            assert decision.fact is None, decision.to_dict()
            assert any(c.features.get("value_excluded") for c in decision.candidates)
            assert _norm(kl.query(aside).text) != _norm(r["target_new"])


def test_other_forms_of_stored_names_link_and_other_names_do_not(data_dir):
    """The linking tiers on the sample's real wordings (no model): KnowEdit's subject aliases written as
    another form of the name link to their subject; no neighbourhood prompt (CounterFact) or multi-hop
    question (MQuAKE) is linked to a stored subject by another form of a name."""
    from benchmarks.studies.alias_links import main as alias_links

    found = alias_links(["--data", str(data_dir)])
    cf = found["aliasing"]["wiki_counterfact"]
    # "Raymond Walter Wietecha" (Ray Wietecha), "F Ortis" (Fernanda Ortis), "Angel Rosa" (Ángel Rosa)
    assert cf["own"]["variant"] >= 3 and cf["other_only"] == 0, cf
    assert cf["own_total"] >= 0.7 * cf["n"], cf
    for texts in found["wrong_links"].values():
        assert texts["n"] > 50 and texts["by_tier"]["variant"] == 0, texts


def test_a_stored_subject_asked_by_another_form_of_its_name_is_answered_from_the_store(
    tmp_path, smollm, embedder, data_dir
):
    """wiki_counterfact's own records: the edit by its prompt, asked by its Subject_Aliasing prompt."""
    records = json.loads(
        (data_dir / "KnowEdit" / "wiki_counterfact" / "train_cf-dev.json").read_text(encoding="utf-8")
    )
    wanted = {"Ray Wietecha", "Ángel Rosa", "Mark Van Guilder", "Fernanda Ortis"}
    picked = [r for r in records if r["subject"] in wanted]
    assert len(picked) == len(wanted)
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.edit_many(
            [dict(prompt=r["prompt"], target=r["target_new"], subject=r["subject"]) for r in picked],
            route="store",
        )
        aliases = [r["portability"]["Subject_Aliasing"][0]["prompt"] for r in picked]
        answers = kl.query_many(aliases)
        assert [a.text for a in answers] == [r["target_new"] for r in picked], aliases
        # the same surname with another given name, or alone, is another person
        assert kl.scope.link("The occupation of Tom Van Guilder is") == []
        assert kl.scope.link("The occupation of Van Guilder is") == []


def test_a_question_about_what_a_place_takes_from_its_country_is_asked_of_the_stored_country(
    tmp_path, smollm, embedder, data_dir
):
    """wiki_recent (learned "The name of the country which X is associated with is") and CounterFact
    (the built-in P17 cloze "X is located in the country of"): a place's continent, currency, official
    language or anthem is asked of its stored country; a person's citizenship is no place's country, and
    a town's head of government is its own."""
    recent = json.loads(
        (data_dir / "KnowEdit" / "wiki_recent" / "recent_train-dev.json").read_text(encoding="utf-8")
    )
    lake = next(r for r in recent if r["subject"] == "Lac Otelnuk")
    cf = next(
        r
        for r in json.loads((data_dir / "CounterFact" / "counterfact-val.json").read_text(encoding="utf-8"))
        if r["subject"] == "Gazzola"
    )
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.edit_many(
            [
                dict(prompt=lake["prompt"], target=lake["target_new"], subject=lake["subject"]),
                dict(prompt=cf["prompt"], target=cf["target_new"], subject=cf["subject"]),
                dict(prompt="Ellie Kemper is a citizen of", target="Croatia", subject="Ellie Kemper"),
            ],
            route="store",
        )
        probes = [p["prompt"] for p in lake["portability"]["Logical_Generalization"]]
        for probe in probes + ["The official language of Gazzola is"]:
            reading = kl.read_scope(probe)
            assert reading.origin == "from country" and reading.rewritten is not None, probe
            assert ("Canada" if "Otelnuk" in probe else "Liberia") in reading.rewritten
        answer = kl.query("The name of the currency in Lac Otelnuk is")
        assert [e.id for e in answer.evidence if e.kind == "fact"], answer.evidence  # the country fact
        assert "Canada" in answer.trace["closed_book"]
        for other in ("The official language of Ellie Kemper is", "The head of government of Gazzola is"):
            assert kl.read_scope(other).origin != "from country", other


def test_a_question_naming_a_stored_value_and_no_relation_reads_its_fact(
    tmp_path, smollm, embedder, data_dir
):
    """wiki_counterfact's "2041 BC follows 29668 Ipf", asked by its Logical_Generalization probe "29668 Ipf
    is followed by": no relation is named, so the question reads the fact and is answered with its
    subject (the relation nearest by similarity used to be taken for the one asked, and refused it); a
    question that names another relation of the value does not read it."""
    records = json.loads(
        (data_dir / "KnowEdit" / "wiki_counterfact" / "train_cf-dev.json").read_text(encoding="utf-8")
    )
    record = next(r for r in records if r["subject"] == "2041 BC")
    probe = record["portability"]["Logical_Generalization"][0]["prompt"]
    with KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder) as kl:
        kl.edit(record["prompt"], target=record["target_new"], subject=record["subject"], route="store")
        assert kl.read_scope(probe).origin == "named object", probe
        assert kl.query(probe).text == "2041 BC"
        assert kl.read_scope("What is the capital of 29668 Ipf?").origin != "named object"
