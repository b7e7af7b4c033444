"""Metric functions of KnowEdit (as EasyEdit computes them) and MQuAKE, on plain values (no model).

KnowEdit (EasyEdit `evaluate_utils.py`, `examples/run_knowedit_llama2.py`):
- rewrite / rephrase / portability accuracy = share of target tokens whose teacher-forced argmax equals the
  token (partial credit), `token_accuracy`;
- locality = share of positions where the argmax tokens on `prompt + " " + answer` are the same before
  and after the edit, `token_agreement`;
- fluency = `ngram_entropy` of a text sampled from the edited model: mean of the list
  [2/3·H₂, 4/3·H₃] (bits), i.e. (2/3·H₂ + 4/3·H₃)/2, on NLTK word tokens, averaged over texts (raw, not ×100);
- aggregation (`aggregate_knowedit`): Edit Succ = mean rewrite accuracy; Portability / Locality = mean over
  cases of (mean over keys of (mean over the key's probes)), cases without the section left out.

MQuAKE (princeton-nlp/MQuAKE README, run_mello.ipynb; MQuAKE-Remastered `check_answer`): an answer is right
if it equals the gold answer or an alias, compared case-insensitively (`answer_matches`); a case is
multi-hop correct if any of its questions is answered right; instance-wise = every hop of the new chain
recalled; edit-wise = share of requested edits recalled on their cloze.

>>> token_accuracy([5, 7, 9], [5, 7, 8])
0.6666666666666666
>>> answer_matches(" kolinda grabar-kitarović", "Kolinda Grabar-Kitarović", ["Grabar-Kitarović"])
True
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer

# `nltk.word_tokenize` = Punkt sentence split (needs the downloaded `punkt_tab` model) + NLTKWordTokenizer
# per sentence. Offline we split sentences with an untrained Punkt tokenizer (same algorithm, no learned
# abbreviation list): tokens differ from word_tokenize only after abbreviations ("Mr." -> "Mr", ".").
_SENTENCES = PunktSentenceTokenizer()
_WORDS = NLTKWordTokenizer()


# ---------------------------------------------------------------- KnowEdit


def token_accuracy(predicted: Sequence[int], target: Sequence[int]) -> float:
    """EasyEdit `test_prediction_acc`: mean(argmax tokens == target tokens); NaN if there are none."""
    if len(target) == 0:
        return math.nan
    n = min(len(predicted), len(target))
    hits = sum(int(predicted[i] == target[i]) for i in range(n))
    return hits / len(target)


def token_agreement(pre: Sequence[int], post: Sequence[int]) -> float:
    """EasyEdit locality: mean(pre-edit argmax tokens == post-edit argmax tokens) on the same text."""
    n = max(len(pre), len(post))
    if n == 0:
        return math.nan
    return sum(int(a == b) for a, b in zip(pre, post)) / n


def word_tokens(text: str) -> list[str]:
    """NLTK word tokens as `nltk.word_tokenize` gives them, without the Punkt download (see above).

    >>> word_tokens("He said: it works. Does it?")
    ['He', 'said', ':', 'it', 'works', '.', 'Does', 'it', '?']
    """
    return [tok for sent in _SENTENCES.tokenize(text) for tok in _WORDS.tokenize(sent)]


def ngram_entropy_of(tokens: Sequence[str], n: int) -> float:
    """Entropy (bits) of the n-gram frequency distribution of `tokens` (0 if there are no n-grams)."""
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in grams.values())


def ngram_entropy(text: str) -> float:
    """EasyEdit `compute_n_gram_entropy`: mean([2/3·H₂, 4/3·H₃]) over the text's word tokens.

    >>> round(ngram_entropy("a b a b"), 4)   # H2 = H({ab:2, ba:1}) = 0.9183, H3 = 1
    0.9728
    """
    tokens = word_tokens(text)
    weighted = [2 / 3 * ngram_entropy_of(tokens, 2), 4 / 3 * ngram_entropy_of(tokens, 3)]
    return sum(weighted) / len(weighted)


def fluency(texts: Iterable[str]) -> float:
    """EasyEdit `n_gram_entropy(gen_texts)`: arithmetic mean of `ngram_entropy` over the texts."""
    values = [ngram_entropy(t) for t in texts]
    return sum(values) / len(values) if values else math.nan


def mean(values: Iterable[float]) -> float | None:
    """Mean of the non-NaN values; None if there are none."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def mean_over_keys(per_key: Mapping[str, Sequence[float]]) -> float | None:
    """One case's portability or locality: mean over keys of the mean over that key's probes."""
    return mean(m for m in (mean(v) for v in per_key.values()) if m is not None)


def aggregate_knowedit(cases: Sequence[Mapping]) -> dict[str, float]:
    """Summary metrics from per-case metric dicts (as `cases.jsonl` stores them under `metrics`).

    Each case dict holds `rewrite_acc` (float), optionally `rephrase_acc` (list), `portability` and
    `locality` ({key: [acc per probe]}), `fluency` (float). Returned values are fractions; keys with no
    data are left out. Per-key means (`portability.<key>`, `locality.<key>`) follow EasyEdit's
    `summary_metrics` (mean over the cases having the key).

    >>> aggregate_knowedit([{"rewrite_acc": 1.0, "portability": {"R": [0.5, 1.0], "S": [0.0]}},
    ...                     {"rewrite_acc": 0.5, "portability": {}}])
    {'edit_succ': 0.75, 'portability': 0.375, 'portability.R': 0.75, 'portability.S': 0.0}
    """
    out: dict[str, float] = {}
    v = mean(c["rewrite_acc"] for c in cases if "rewrite_acc" in c)
    if v is not None:
        out["edit_succ"] = v
    v = mean(m for c in cases if c.get("rephrase_acc") for m in [mean(c["rephrase_acc"])] if m is not None)
    if v is not None:
        out["rephrase"] = v
    for section in ("portability", "locality"):
        v = mean(m for c in cases for m in [mean_over_keys(c.get(section) or {})] if m is not None)
        if v is not None:
            out[section] = v
        keys = sorted({k for c in cases for k in (c.get(section) or {})})
        for key in keys:
            kv = mean(
                m
                for c in cases
                if key in (c.get(section) or {})
                for m in [mean(c[section][key])]
                if m is not None
            )
            if kv is not None:
                out[f"{section}.{key}"] = kv
    v = mean(c["fluency"] for c in cases if c.get("fluency") is not None)
    if v is not None:
        out["fluency"] = v
    return out


# ---------------------------------------------------------------- MQuAKE


def _norm(text: str) -> str:
    return text.strip().upper()


def answer_matches(answer: str | None, gold: str, aliases: Iterable[str] = ()) -> bool:
    """Exact match with the gold answer or an alias, case-insensitive (MQuAKE-Remastered `check_answer`;
    surrounding whitespace ignored)."""
    if answer is None:
        return False
    a = _norm(answer)
    return a == _norm(gold) or any(a == _norm(x) for x in aliases)


def cloze_recalled(continuation: str, gold: str, aliases: Iterable[str] = ()) -> bool:
    """Whether a cloze continuation states the answer: it begins with the answer or an alias
    (case-insensitive) followed by a non-word character or the end.

    >>> cloze_recalled(" Croatia, a country in", "Croatia")
    True
    >>> cloze_recalled(" USSR and", "US")
    False
    """
    text = continuation.strip().upper()
    for candidate in (gold, *aliases):
        c = candidate.strip().upper()
        if c and text.startswith(c) and (len(text) == len(c) or not re.match(r"\w", text[len(c)])):
            return True
    return False


def first_line_answer(generation: str) -> str:
    """The answer of a standard few-shot query (`... A:`): the generated text up to the first newline."""
    return generation.strip().split("\n")[0].strip()


def cot_answer(generation: str) -> str | None:
    """The answer of a CoT query: the text after the first `Answer:` line (None if there is none)."""
    for line in generation.split("\n"):
        if line.strip().startswith("Answer:"):
            return line.strip()[len("Answer:") :].strip()
    return None


def aggregate_mquake(cases: Sequence[Mapping]) -> dict[str, float]:
    """Summary metrics from per-case metric dicts.

    Each case dict holds `edit_recalled` (list of bools, one per requested edit), `hops` (list of
    {"edited": bool, "recalled": bool}), `multi_hop` (bool) and `conflicted` (bool). `edit_wise` and the
    hop recalls are pooled over edits / hops; `instance_wise` and `multi_hop` are means over cases.

    >>> aggregate_mquake([{"edit_recalled": [True, False], "multi_hop": True, "conflicted": False,
    ...                    "hops": [{"edited": True, "recalled": True}, {"edited": False, "recalled": False}]}])
    {'edit_wise': 0.5, 'instance_wise': 0.0, 'multi_hop': 1.0, 'edited_hop_recall': 1.0, 'unedited_hop_recall': 0.0, 'multi_hop_unconflicted': 1.0}
    """
    out: dict[str, float] = {}
    edits = [bool(x) for c in cases for x in c.get("edit_recalled", [])]
    if edits:
        out["edit_wise"] = sum(edits) / len(edits)
    if cases:
        out["instance_wise"] = sum(all(h["recalled"] for h in c["hops"]) for c in cases) / len(cases)
        out["multi_hop"] = sum(bool(c["multi_hop"]) for c in cases) / len(cases)
    for name, edited in (("edited_hop_recall", True), ("unedited_hop_recall", False)):
        hops = [h["recalled"] for c in cases for h in c["hops"] if h["edited"] == edited]
        if hops:
            out[name] = sum(hops) / len(hops)
    clean = [c for c in cases if not c.get("conflicted")]
    if clean:
        out["multi_hop_unconflicted"] = sum(bool(c["multi_hop"]) for c in clean) / len(clean)
    return out
