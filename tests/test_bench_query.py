"""The query loop's batched machinery and its newer behaviour, on the real SmolLM2-135M (no mocks):
batched greedy generation equals one `generate` per prompt; `query_many` equals `query` one by one; a
chain starts from an entity the store does not know (its hop answered by the model, closed-book) and
continues through the store; an empty generation falls back to the evidence's answer; MQuAKE's
verdict-settled early stop gives the verdict of the full generation."""

from __future__ import annotations

import pytest

from benchmarks.runners.mquake import cloze_settled, line_settled
from benchmarks.scoring.generation import greedy_generate
from benchmarks.scoring.metrics import answer_matches, cloze_recalled, first_line_answer
from kedit import KnowledgeLayer
from kedit.query import _norm, complete_many, short_answer

PROMPTS = [
    "Ellie Kemper is a citizen of",
    "The capital of France is",
    "Q: Which continent is India located in? A: Asia\nQ: Which continent is Canada located in? A: North America\n"
    "Q: Which continent is Peru located in? A:",
    "Q: Which continent is India located in? A: Asia\nQ: Which continent is Canada located in? A: North America\n"
    "Q: Which continent is Kenya located in? A:",
    "The mother tongue of Danielle Darrieux is",
]


@pytest.fixture()
def kl(tmp_path, smollm, embedder):
    layer = KnowledgeLayer.open(tmp_path / "kb", model=smollm, embedder=embedder)
    yield layer
    layer.close()


def test_batched_greedy_equals_one_generate_per_prompt(smollm):
    many = complete_many(smollm, PROMPTS, [8, 8, 6, 6, 8], until="newline")
    for prompt, n, got in zip(PROMPTS, [8, 8, 6, 6, 8], many):
        assert got.split("\n")[0] == greedy_generate(smollm, prompt, n, stop=("\n",))
    assert complete_many(smollm, PROMPTS[:2], 6) == [smollm.complete(p, 6) for p in PROMPTS[:2]]


def test_query_many_equals_query_one_by_one(kl):
    kl.insert(subject="Atlantis", relation="capital", object="Poseidonia", source="atlas")
    questions = [
        "What is the capital of Atlantis?",
        "Who is the head of state of the country Ellie Kemper is a citizen of?",
    ]
    many = kl.query_many(questions)
    for q, ans in zip(questions, many):
        one = kl.query(q)
        assert (one.text, one.trace["mode"]) == (ans.text, ans.trace["mode"])
        assert [h["answer"] for h in one.trace["hops"]] == [h["answer"] for h in ans.trace["hops"]]


def test_chain_starts_from_an_entity_the_store_does_not_know(kl):
    q = "What is the capital of the country of citizenship of Ellie Kemper?"
    first = kl.query(q)
    tr = first.trace
    assert tr["mode"] == "chain" and tr["chain_start"] == "text"
    assert [h["relation"] for h in tr["hops"]] == ["P27", "P36"]
    assert tr["hops"][0]["subject"] == "Ellie Kemper" and tr["hops"][0]["tier"] == "parametric"
    country = tr["hops"][0]["answer"]
    assert country and first.evidence and first.evidence[0].source == "model"
    # a stored fact about the model's answer now decides the second hop
    kl.insert(subject=country, relation="capital", object="Zorkville", source="atlas")
    second = kl.query(q)
    assert second.text == "Zorkville"
    assert [h["tier"] for h in second.trace["hops"]] == ["parametric", "stored"]
    assert any(e.fact_id is not None for e in second.evidence)


def test_a_question_naming_nothing_stored_gets_no_stored_evidence(kl):
    kl.insert(subject="Atlantis", relation="capital", object="Poseidonia", source="atlas")
    # no stored entity named: out of scope, so the store's fact must not leak into the answer
    ans = kl.query("What is the capital city of the lost island?", max_new_tokens=0)
    assert ans.trace["mode"] == "closed-book" and "empty knowledge base" in ans.trace["closed_book"]
    assert ans.trace["scope"]["candidates"] == [] and "Poseidonia" not in ans.text
    assert all(e.fact_id is None and e.passage_id is None for e in ans.evidence)


def test_leading_the_is_dropped_from_short_answers():
    assert short_answer("the United States") == "United States"
    assert short_answer("The Hague") == "The Hague"  # a capitalised article is part of the name
    assert _norm("the United Kingdom") == _norm("United Kingdom")


@pytest.mark.parametrize("gold,aliases", [("Croatia", ("HR", "Republic of Croatia")), ("US", ("USA",))])
def test_settled_verdicts_match_the_full_generation(gold, aliases):
    texts = [
        " Croatia, a country",
        " Republic of Croatia\n",
        " USSR and",
        " US, in",
        " USA",
        " Paris is",
        " Croat",
        "\nCroatia",
        " HR",
    ]
    for text in texts:
        full = cloze_recalled(text.split("\n")[0], gold, aliases)
        line = answer_matches(first_line_answer(text.split("\n")[0]), gold, aliases)
        for cut in range(1, len(text) + 1):
            if cloze_settled(text[:cut], gold, aliases):
                assert cloze_recalled(text[:cut].split("\n")[0], gold, aliases) == full, (text, cut)
            if line_settled(text[:cut], gold, aliases):
                assert answer_matches(first_line_answer(text[:cut].split("\n")[0]), gold, aliases) == line, (
                    text,
                    cut,
                )
