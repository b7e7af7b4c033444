"""Benchmark metric functions against hand-computed values (no model)."""

from __future__ import annotations

import math

import pytest

from benchmarks.scoring.metrics import (
    aggregate_knowedit,
    aggregate_mquake,
    answer_matches,
    cloze_recalled,
    cot_answer,
    first_line_answer,
    fluency,
    mean_over_keys,
    ngram_entropy,
    ngram_entropy_of,
    token_accuracy,
    token_agreement,
    word_tokens,
)


def test_token_accuracy_gives_partial_credit():
    assert token_accuracy([5, 7, 9], [5, 7, 8]) == pytest.approx(2 / 3)
    assert token_accuracy([1, 2], [1, 2]) == 1.0
    assert token_accuracy([3, 4, 5, 6], [0, 4, 0, 6]) == 0.5
    assert math.isnan(token_accuracy([], []))  # EasyEdit: mean of nothing is NaN, dropped by aggregation


def test_locality_is_agreement_of_pre_and_post_tokens_not_gold():
    assert token_agreement([10, 11, 12, 13], [10, 99, 12, 98]) == 0.5
    assert token_agreement([1, 2, 3], [1, 2, 3]) == 1.0


def test_word_tokens_match_nltk_word_tokenize_on_sentences():
    # nltk.word_tokenize splits sentences first, so a sentence-final period becomes its own token
    assert word_tokens("He said: it works. Does it?") == [
        "He",
        "said",
        ":",
        "it",
        "works",
        ".",
        "Does",
        "it",
        "?",
    ]
    assert word_tokens("I can't go.") == ["I", "ca", "n't", "go", "."]


def test_ngram_entropy_by_hand():
    # tokens a b a b: bigrams {ab: 2, ba: 1}, trigrams {aba: 1, bab: 1}
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy_of(["a", "b", "a", "b"], 2) == pytest.approx(h2)
    assert ngram_entropy_of(["a", "b", "a", "b"], 3) == pytest.approx(1.0)
    expected = (2 / 3 * h2 + 4 / 3 * 1.0) / 2  # EasyEdit: mean of the weighted list
    assert ngram_entropy("a b a b") == pytest.approx(expected)
    assert ngram_entropy("a b a b") == pytest.approx(0.97276, abs=1e-5)
    # 8 distinct tokens: 7 distinct bigrams (log2 7), 6 distinct trigrams (log2 6)
    text = "one two three four five six seven eight"
    assert ngram_entropy(text) == pytest.approx((2 / 3 * math.log2(7) + 4 / 3 * math.log2(6)) / 2)
    # a single repeated word has one bigram and one trigram: zero entropy
    assert ngram_entropy("go go go go go") == 0.0
    assert fluency(["a b a b", "go go go go go"]) == pytest.approx(expected / 2)


def test_knowedit_aggregation_is_mean_over_cases_of_mean_over_keys():
    cases = [
        {
            "rewrite_acc": 1.0,
            "rephrase_acc": [0.5],
            "portability": {"R": [0.5, 1.0], "S": [0.0]},
            "locality": {"RS": [1.0, 0.5], "F": [0.0]},
            "fluency": 5.0,
        },
        {
            "rewrite_acc": 0.5,
            "rephrase_acc": [1.0],
            "portability": {},
            "locality": {"RS": [1.0]},
            "fluency": 6.0,
        },
    ]
    assert mean_over_keys(cases[0]["portability"]) == pytest.approx((0.75 + 0.0) / 2)
    out = aggregate_knowedit(cases)
    assert out["edit_succ"] == pytest.approx(0.75)
    assert out["rephrase"] == pytest.approx(0.75)
    assert out["portability"] == pytest.approx(0.375)  # second case has no portability: left out
    assert out["locality"] == pytest.approx(((0.75 + 0.0) / 2 + 1.0) / 2)
    assert out["locality.RS"] == pytest.approx((0.75 + 1.0) / 2)
    assert out["locality.F"] == pytest.approx(0.0)
    assert out["fluency"] == pytest.approx(5.5)


def test_answer_matching_is_exact_case_insensitive_with_aliases():
    gold, aliases = "Kolinda Grabar-Kitarović", ["Grabar-Kitarović"]
    assert answer_matches("Kolinda Grabar-Kitarović", gold, aliases)
    assert answer_matches(" kolinda grabar-kitarović ", gold, aliases)
    assert answer_matches("GRABAR-KITAROVIĆ", gold, aliases)
    assert not answer_matches("Kolinda", gold, aliases)  # exact, not substring
    assert not answer_matches("President Kolinda Grabar-Kitarović", gold, aliases)
    assert not answer_matches(None, gold, aliases)


def test_cloze_recall_needs_the_answer_at_the_start_on_a_word_boundary():
    assert cloze_recalled(" Croatia, a country", "Croatia")
    assert cloze_recalled(" the Republic of Croatia", "Croatia", ["the Republic of Croatia"])
    assert not cloze_recalled(" Croatian people", "Croatia")
    assert not cloze_recalled(" the United States", "Croatia")
    assert cloze_recalled(" U.S. citizen", "United States", ["U.S."])


def test_answer_parsing():
    assert first_line_answer(" Jill Biden\nQ: next") == "Jill Biden"
    assert cot_answer(" X is in Y. Y is in Z.\nAnswer: Z") == "Z"
    assert cot_answer(" no answer line") is None


def test_mquake_aggregation_pools_edits_and_hops():
    cases = [
        {
            "edit_recalled": [True, False],
            "multi_hop": True,
            "conflicted": False,
            "hops": [{"edited": True, "recalled": True}, {"edited": False, "recalled": False}],
        },
        {
            "edit_recalled": [True],
            "multi_hop": False,
            "conflicted": True,
            "hops": [{"edited": True, "recalled": True}, {"edited": False, "recalled": True}],
        },
    ]
    out = aggregate_mquake(cases)
    assert out["edit_wise"] == pytest.approx(2 / 3)
    assert out["instance_wise"] == pytest.approx(0.5)
    assert out["multi_hop"] == pytest.approx(0.5)
    assert out["edited_hop_recall"] == 1.0
    assert out["unedited_hop_recall"] == pytest.approx(0.5)
    assert out["multi_hop_unconflicted"] == 1.0


def test_edit_quality_paired_comparison_by_hand(tmp_path):
    import json

    from benchmarks.scoring.counterfact import METRICS
    from benchmarks.studies.edit_quality import paired

    def row(method, ids, vals):
        return {
            "method": method,
            "cases": len(ids),
            "case_ids": ids,
            "config": {"layer": 4},
            "per_case": {m: vals for m in METRICS},
        }

    path = tmp_path / "q.jsonl"
    rows = [
        row("memit", [1, 2, 3, 4], [1.0, 0.0, 0.5, 1.0]),
        row("alphaedit", [4, 3, 2, 9], [1.0, 1.0, 1.0, 0.0]),
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = paired(path, "method=memit", "method=alphaedit,layer=4")
    # common cases 4, 3, 2: A = 1.0, 0.5, 0.0 -> B = 1.0, 1.0, 1.0; B - A = 0, +0.5, +1.0
    assert "over 3 common cases" in out
    assert "| rewrite | 0.500 | 1.000 | +0.500 ± 0.289 | 2 / 0 |" in out
