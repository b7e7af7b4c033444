"""Forgetting benchmark: MUSE's six questions, adapted to facts, for GU-NPO, plain NPO and gradient ascent.

Facts: CounterFact records whose `ground_truth` SmolLM2 already states after `prompt`, by the criterion
`kl.forget` verifies with (first token in the model's top 3, or p > 0.05; `kedit.forget_probes`): only
about 4 % of counterfact-val has it top-1, too few for N >= 100, about 13 % by this criterion. The first N are forgotten; 8 more are the retain set (GU projects against their
gradients); a further held-aside set is never trained on and measures utility.

1. no verbatim memorisation (VerbMem): the fact's sentence continued greedily still gives the object
   (teacher-forced: every object token is the argmax after `prompt`), share of forgotten facts;
2. no knowledge memorisation (KnowMem): QA forms - the record's paraphrase (`rephrase_prompt`) and, where
   the template matches a relation of kedit's vocabulary, its question ("Q: ... A:") - answered with the
   object (first token top-1), share;
3. no privacy leakage: Min-K% probability (k = 20 %) of each forgotten fact's sentence vs the same prompt
   with CounterFact's never-seen `target_new`; AUC of telling them apart, and PrivLeak = (AUC - 0.5) / 0.5
   (MUSE divides by the retrained model's AUC: there is no retrained model here, so the reference is 0.5,
   a model that cannot tell a forgotten fact from a never-seen one);
4. utility preserved: top-1 answers kept on kedit's 32 locality probes, on the held-aside known facts and on
   the forgotten facts' CounterFact neighbourhood prompts (other subjects, same relation and object);
5. scalability: one unlearning run forgetting the N facts at once, and one forgetting `--scale` facts at
   once (1,000), both measured in full (VerbMem, held-aside / locality / neighbourhood kept, steps,
   seconds). counterfact-val has ~239 known facts, so the larger run takes its own facts, retain and
   held-aside sets from `--scale-data` (counterfact-train: its first 8,500 records hold 1,048 known ones;
   `python -m benchmarks.studies.forget_bench` writes them once as a CounterFact file). The unlearner runs a
   thousand pairs in length-sorted chunks of `UnlearnConfig.batch_rows` (one pass would need ~30 GB);
6. sustainability: the N facts arriving as `--requests` requests one by one, each run on the weights the
   previous one left; everything measured after the last.

lr and max steps are `UnlearnConfig`'s defaults, chosen by `benchmarks/studies/forget_sweep.py` on
counterfact-train known facts (README, Forgetting).

    python -m benchmarks.studies.forget_bench --data counterfact-train.json --scan 8500 --out known-train.json
    python -m benchmarks forget --n 100 --held 30 --requests 4 --scale 1000 --scale-data known-train.json
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

# `markdown` (the report) lives in benchmarks.scoring.forget_table; re-exported for `forget_bench.markdown`
from benchmarks.scoring.forget_table import markdown as markdown
from kedit.forget_probes import states_object
from kedit.layer import LOCALITY_PROBES
from kedit.scoring import score_targets
from kedit.statements import match_relation
from kedit.unlearning import FactNotKnownError, UnlearnConfig, Unlearner
from memory import RelationVocabulary

METHODS: dict[str, dict] = {
    "GU-NPO": {"objective": "npo", "projection": True},
    "NPO": {"objective": "npo", "projection": False},
    "GA": {"objective": "ga", "projection": False},
}
MIN_K = 0.2


@dataclass(frozen=True)
class KnownFact:
    prompt: str
    subject: str
    object: str
    never_seen: str  # CounterFact's target_new: a false object the model never read for this prompt
    paraphrase: str
    question: str | None  # "Q: ... A:" from the relation vocabulary, when the template matches a relation
    neighbour: tuple[str, str]


def known_rows(bundle, rows: list[dict], batch: int = 32) -> list[dict]:
    """The records whose ground truth the model states after the prompt (kedit's forget criterion) and
    whose prompt names the subject, in file order. Scored shortest prompt first (batches pad less)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["prompt"]))
    scores = score_targets(
        bundle, [rows[i]["prompt"] for i in order], [rows[i]["ground_truth"] for i in order], batch
    )
    known = {
        i
        for i, score in zip(order, scores)
        if states_object({"prob": score.prob, "rank": score.first_token_rank})
    }
    return [row for i, row in enumerate(rows) if i in known and row["subject"] in row["prompt"]]


def known_facts(bundle, rows: list[dict], batch: int = 32) -> list[KnownFact]:
    """`known_rows` as `KnownFact`s."""
    vocabulary = RelationVocabulary.builtin()
    facts = []
    for row in known_rows(bundle, rows, batch):
        relation = match_relation(row["prompt"].replace(row["subject"], "{}"), vocabulary)
        question = f"Q: {vocabulary.resolve(relation).ask(row['subject'])} A:" if relation else None
        facts.append(
            KnownFact(
                row["prompt"],
                row["subject"],
                row["ground_truth"],
                row["target_new"],
                row["rephrase_prompt"],
                question,
                (row["locality_prompt"], row["locality_ground_truth"]),
            )
        )
    return facts


@torch.no_grad()
def min_k_prob(bundle, texts: Sequence[str], k: float = MIN_K, batch: int = 32) -> list[float]:
    """Min-K% probability (Shi et al. 2024): mean log-probability of the k% least likely tokens of each text."""
    tok, model = bundle.tokenizer, bundle.model
    out: list[float] = []
    for start in range(0, len(texts), batch):
        ids = [tok(t)["input_ids"] for t in texts[start : start + batch]]
        width = max(map(len, ids))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        x = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=bundle.device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids], device=bundle.device)
        logp = torch.log_softmax(model(input_ids=x, attention_mask=mask).logits[:, :-1].float(), -1)
        token_logp = logp.gather(-1, x[:, 1:, None])[..., 0]
        for row, seq in enumerate(ids):
            values = sorted(token_logp[row, : len(seq) - 1].tolist())
            n = max(1, math.ceil(k * len(values)))
            out.append(sum(values[:n]) / n)
    return out


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney AUC).

    >>> auc([2.0, 3.0], [1.0, 0.0]), auc([1.0, 2.0], [0.0, 3.0])
    (1.0, 0.5)
    """
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def _top1(bundle, pairs: Sequence[tuple[str, str]]) -> list[int]:
    """1 where the answer's first token is the model's top prediction after the prompt."""
    scores = score_targets(bundle, [p for p, _ in pairs], [a for _, a in pairs])
    return [int(s.first_token_rank == 0) for s in scores]


def measure(
    bundle, forgotten: list[KnownFact], held: list[KnownFact], baseline: dict | None = None, six: bool = True
) -> dict:
    """The six-question measurements (but scale and time) of the model as it is now; six=False measures
    only forgetting (VerbMem) and what is kept, for the scalability and sweep runs (no QA forms, no MIA)."""
    verb = score_targets(bundle, [f.prompt for f in forgotten], [f.object for f in forgotten])
    local = _top1(bundle, list(LOCALITY_PROBES))
    kept = _top1(bundle, [(f.prompt, f.object) for f in held])
    neighbours = _top1(bundle, [f.neighbour for f in forgotten])
    out: dict = {
        "verbmem": statistics.fmean(int(s.accuracy == 1.0) for s in verb),
        "forget_prob": statistics.fmean(s.prob for s in verb),
        "_locality": local,
        "_held": kept,
        "_neighbours": neighbours,
    }
    if six:
        qa = [(f.paraphrase, f.object) for f in forgotten] + [
            (f.question, f.object) for f in forgotten if f.question
        ]
        seen = min_k_prob(bundle, [f"{f.prompt} {f.object}" for f in forgotten])
        unseen = min_k_prob(bundle, [f"{f.prompt} {f.never_seen}" for f in forgotten])
        area = auc(seen, unseen)
        out |= {
            "knowmem": statistics.fmean(_top1(bundle, qa)),
            "mia_auc": area,
            "privleak_pct": 100 * (area - 0.5) / 0.5,
        }
    base = baseline or out
    for name, key in (
        ("locality_kept", "_locality"),
        ("held_kept", "_held"),
        ("neighbour_kept", "_neighbours"),
    ):
        was = [i for i, v in enumerate(base[key]) if v]  # of those the model answered before forgetting
        out[name] = statistics.fmean(out[key][i] for i in was) if was else float("nan")
        out[name.replace("_kept", "_n")] = len(was)  # the denominator: answered before forgetting
    return out


def public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def unlearn(
    un: Unlearner,
    forget: list[KnownFact],
    retain: list[KnownFact],
    method: str,
    settings: dict,
    on_step: Callable[[int, dict], None] | None = None,
) -> tuple[object, float]:
    """One unlearning run of `method`; returns the record (None when the model already states none) and seconds."""
    config = UnlearnConfig(**METHODS[method], **settings)
    pairs = [(f.prompt, f.object) for f in forget]
    t0 = time.perf_counter()
    try:
        record = un.forget(pairs, [(f.prompt, f.object) for f in retain], config, on_step=on_step)
    except FactNotKnownError:
        # a request arriving after earlier runs may find some facts already gone: forget the rest
        still = [
            p
            for p, s in zip(pairs, score_targets(un.bundle, [p for p, _ in pairs], [a for _, a in pairs]))
            if not config.is_forgotten(s.prob, s.first_token_rank)
        ]
        record = (
            un.forget(still, [(f.prompt, f.object) for f in retain], config, on_step=on_step)
            if still
            else None
        )
    return record, time.perf_counter() - t0


def split(
    facts: list[KnownFact], n: int, held: int, what: str
) -> tuple[list[KnownFact], list[KnownFact], list[KnownFact]]:
    """The first n facts to forget, the next 8 as the retain set, the next `held` held aside."""
    if len(facts) < n + 8 + held:
        raise ValueError(
            f"{len(facts)} known facts in the {what} set; {n} to forget need {n + 8 + held} "
            f"(forget + 8 retain + {held} held-aside): scan more records"
        )
    return facts[:n], facts[n : n + 8], facts[n + 8 : n + 8 + held]


def _scale_row(method: str, record, seconds: float, after: dict) -> dict:
    return {
        "method": method,
        "requests": len(record.forget),
        "steps": record.steps,
        "seconds": round(seconds, 1),
        "s_per_step": round(seconds / max(1, record.steps), 2),
        **{k: after[k] for k in ("verbmem", "forget_prob", "held_kept", "locality_kept", "neighbour_kept")},
    }


def run(
    bundle,
    facts: list[KnownFact],
    *,
    n: int,
    requests: int,
    held: int,
    settings: dict,
    methods: Sequence[str],
    scale: int = 0,
    scale_facts: list[KnownFact] | None = None,
    only_scale: bool = False,
    log: Callable[[str], None] = print,
    on_method: Callable[[dict], None] | None = None,
) -> dict:
    """Every method on the same facts, from the same starting weights (each run is undone after measuring).

    scale > n: one more run per method forgetting `scale` facts at once, measured in full (forgetting and
    what is kept), on `scale_facts` (e.g. counterfact-train's known facts; default: `facts`) with their own
    8 retain and `held` held-aside facts. only_scale: that run alone (`facts` unused). on_method(partial
    result): after each run, to save progress.
    """
    big, big_retain, big_aside = (
        split(scale_facts or facts, scale, held, "scalability") if scale > n else ([], [], [])
    )
    forget, retain, aside = split(facts, n, held, "evaluation") if not only_scale else ([], [], [])
    un = Unlearner(bundle)
    before = measure(bundle, forget, aside) if forget else None
    result = {
        "known_facts": len(facts),
        "n": n if forget else 0,
        "held_aside": len(aside) if forget else held,
        "settings": settings,
        "six": [{"method": "before", **public(before)}] if before else [],
        "scale": [],
        "sequential": [],
        "scale_requested": scale,
        "scale_known_facts": len(scale_facts or facts) if big else 0,
        "scale_before": None,
    }
    # Cheapest first (the six-way runs, then one-by-one, then the large runs), saving after each run.
    for method in methods if forget else ():
        record, seconds = unlearn(un, forget, retain, method, settings)
        after = measure(bundle, forget, aside, before)
        result["six"].append(
            {"method": method, **public(after), "steps": record.steps, "seconds": round(seconds, 1)}
        )
        result["scale"].append(_scale_row(method, record, seconds, after))
        un.undo(record)
        log(f"{method}: {json.dumps(result['six'][-1])}")
        if on_method is not None:
            on_method(result)
    for method in methods if requests and forget else ():
        result["sequential"].append(
            _sequential(un, forget, retain, aside, before, method, settings, requests)
        )
        log(f"{method} sequential: {json.dumps(result['sequential'][-1])}")
        if on_method is not None:
            on_method(result)
    if big:
        big_before = measure(bundle, big, big_aside, six=False)
        result["scale_before"] = public(big_before)
    for method in methods if big else ():
        record, seconds = unlearn(un, big, big_retain, method, settings)
        result["scale"].append(
            _scale_row(method, record, seconds, measure(bundle, big, big_aside, big_before, six=False))
        )
        un.undo(record)
        log(f"{method} scale: {json.dumps(result['scale'][-1])}")
        if on_method is not None:
            on_method(result)
    return result


def _sequential(
    un: Unlearner,
    forget: list[KnownFact],
    retain: list[KnownFact],
    aside: list[KnownFact],
    before: dict,
    method: str,
    settings: dict,
    requests: int,
) -> dict:
    """The facts arriving as `requests` requests one by one, each run on the weights the previous one left."""
    done, t0 = [], time.perf_counter()
    size = math.ceil(len(forget) / requests)
    for start in range(0, len(forget), size):
        record, _ = unlearn(un, forget[start : start + size], retain, method, settings)
        if record is not None:
            done.append(record)
    seconds = time.perf_counter() - t0
    after = measure(un.bundle, forget, aside, before)
    for record in reversed(done):
        un.undo(record)
    return {
        "method": method,
        "requests": len(range(0, len(forget), size)),
        "facts_per_request": size,
        "seconds": round(seconds, 1),
        **{
            k: after[k]
            for k in ("verbmem", "knowmem", "mia_auc", "locality_kept", "held_kept", "neighbour_kept")
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Write the known records of a CounterFact file (its first --scan) as a CounterFact file, so a
    scalability run over a thousand facts can take them as `--scale-data` without rescanning ~8,000."""
    import argparse
    from pathlib import Path

    from kedit import load_model

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--scan", type=int, default=None, help="first records scanned [default: all]")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = json.loads(args.data.read_text(encoding="utf-8"))[: args.scan]
    known = known_rows(load_model(args.model), rows)
    args.out.write_text(json.dumps(known, indent=1))
    print(f"{len(known)} of the first {len(rows)} records of {args.data.name} known: {args.out}")


if __name__ == "__main__":
    main()
