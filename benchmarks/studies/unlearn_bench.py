"""Unlearning benchmark: GU (projected) vs plain NPO/GA on CounterFact facts the model knows.

For each fact: forget (prompt, ground_truth); retain = neighbouring known facts of the same relation
(their gradients are projected out); probes = other known facts held out from training; paraphrase =
the fact's rephrase prompt. Reports forget efficacy (target prob / rank after) and the retain / probe
probability change, with and without projection, from the same starting weights (each run is undone).

    .venv/bin/python -m benchmarks.studies.unlearn_bench --n 20
    .venv/bin/python -m benchmarks.studies.unlearn_bench --sweep-layers      # the layer choice behind the default
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from kedit import load_model
from kedit.paths import require_data_dir
from kedit.scoring import score_targets
from kedit.unlearning import UnlearnConfig, Unlearner, UnlearnRecord

# Hand-picked facts SmolLM2-135M states (rank 0), with neighbours, for the layer sweep.
SWEEP_FACTS = [
    (
        ("The capital of France is", "Paris"),
        [
            ("The capital of Germany is", "Berlin"),
            ("The capital of Italy is", "Rome"),
            ("The capital of Spain is", "Madrid"),
            ("The capital of Japan is", "Tokyo"),
        ],
        [("The capital of England is", "London"), ("The official language of France is", "French")],
    ),
    (
        ("The chemical symbol for gold is", "Au"),
        [
            ("The chemical symbol for silver is", "Ag"),
            ("The chemical symbol for iron is", "Fe"),
            ("The capital of Japan is", "Tokyo"),
        ],
        [("The capital of Germany is", "Berlin")],
    ),
    (
        ("Danielle Darrieux's mother tongue is", "French"),
        [
            ("The mother tongue of Jean Gabin is", "French"),
            ("The official language of France is", "French"),
            ("The capital of France is", "Paris"),
        ],
        [("The capital of Italy is", "Rome")],
    ),
]


def known_counterfact(bundle, n_scan: int, min_prob: float) -> list[dict]:
    """CounterFact val facts whose ground truth the model ranks first with prob >= min_prob."""
    path = require_data_dir() / "CounterFact" / "counterfact-val.json"
    rows = json.loads(path.read_text())[:n_scan]
    scores = score_targets(bundle, [r["prompt"] for r in rows], [r["ground_truth"] for r in rows])
    known = []
    for r, s in zip(rows, scores):
        if s.first_token_rank == 0 and s.prob >= min_prob:
            known.append(dict(r, template=r["prompt"].replace(r["subject"], "{}"), prob=s.prob))
    return known


def build_cases(known: list[dict], n: int, n_retain: int, n_probes: int) -> list[tuple]:
    """(forget, retain, probes, paraphrases) per fact.

    Retain pairs are known facts of the same relation (same prompt template) first, topped up with
    other known facts; probes are further known facts, held out from training, same relation first.
    """
    by_template = defaultdict(list)
    for fact in known:
        by_template[fact["template"]].append(fact)
    # Facts from relations with known neighbours, round-robin over relations (largest first).
    templates = [
        t for t in sorted(by_template, key=lambda t: -len(by_template[t])) if len(by_template[t]) >= 2
    ]
    order = [by_template[t][d] for d in range(len(known)) for t in templates if d < len(by_template[t])]
    cases = []
    for i, fact in enumerate(order[:n]):
        same = [f for f in by_template[fact["template"]] if f["prompt"] != fact["prompt"]]
        other = [f for f in known if f["template"] != fact["template"]]
        other = other[i % len(other) :] + other[: i % len(other)]  # a different slice for each fact
        retain = (same + other)[:n_retain]
        probes = [f for f in same + other if f not in retain][:n_probes]
        cases.append(
            (
                [(fact["prompt"], fact["ground_truth"])],
                [(f["prompt"], f["ground_truth"]) for f in retain],
                [(f["prompt"], f["ground_truth"]) for f in probes],
                [(fact["rephrase_prompt"], fact["ground_truth"])],
            )
        )
    return cases


def run_case(un: Unlearner, case: tuple, cfg: UnlearnConfig) -> UnlearnRecord:
    forget, retain, probes, paraphrases = case
    rec = un.forget(forget, retain, cfg, probes=probes, paraphrases=paraphrases)
    un.undo(rec)  # every run starts from the original weights
    return rec


def summarise(label: str, recs: list[UnlearnRecord]) -> dict:
    f = [c for r in recs for c in r.forget]
    para = [c for r in recs for c in r.paraphrases]
    out = {
        "variant": label,
        "facts": len(recs),
        "forgotten": sum(r.config.is_forgotten(c.prob_after, c.rank_after) for r in recs for c in r.forget),
        "verified": sum(r.verified for r in recs),
        "target_prob_before": statistics.mean(c.prob_before for c in f),
        "target_prob_after": statistics.mean(c.prob_after for c in f),
        "target_rank_after_median": statistics.median(c.rank_after for c in f),
        "paraphrase_prob_before": statistics.mean(c.prob_before for c in para) if para else float("nan"),
        "paraphrase_prob_after": statistics.mean(c.prob_after for c in para) if para else float("nan"),
        "retain_mean_abs_dprob": statistics.mean(r.retain_mean_abs_change for r in recs),
        "probes_mean_abs_dprob": statistics.mean(r.probes_mean_abs_change for r in recs if r.probes),
        "retain_top1_kept": statistics.mean(c.rank_after == 0 for r in recs for c in r.retain),
        "probes_top1_kept": statistics.mean(c.rank_after == 0 for r in recs for c in r.probes),
        "steps_mean": statistics.mean(r.steps for r in recs),
        "seconds_mean": statistics.mean(r.seconds for r in recs),
    }
    return out


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    print("\t".join(keys))
    for row in rows:
        print("\t".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=20, help="CounterFact facts to forget (one at a time)")
    ap.add_argument("--scan", type=int, default=2000, help="CounterFact val entries scanned for known facts")
    ap.add_argument("--min-prob", type=float, default=0.1)
    ap.add_argument("--objective", default="npo", choices=["npo", "ga", "simnpo"])
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--layers", default=None, help="comma-separated MLP layers (default: the config's)")
    ap.add_argument("--variants", default="gu,plain", help="gu (projected) and/or plain (no projection)")
    ap.add_argument(
        "--sweep-layers", action="store_true", help="compare layer windows on the hand-picked facts"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the summary rows here")
    args = ap.parse_args()

    bundle = load_model(args.model)
    un = Unlearner(bundle)
    base = {"objective": args.objective}
    if args.lr is not None:
        base["lr"] = args.lr
    if args.max_steps is not None:
        base["max_steps"] = args.max_steps
    t0 = time.perf_counter()
    rows = []
    if args.sweep_layers:
        cases = [([f], r, p, []) for f, r, p in SWEEP_FACTS]
        n = bundle.spec.n_layers(bundle.model)
        for start in range(2, n - 3, 6):
            layers = tuple(range(start, start + 4))
            recs = [run_case(un, c, UnlearnConfig(layers=layers, **base)) for c in cases]
            rows.append(summarise(f"GU layers {layers[0]}-{layers[-1]}", recs))
            print_table(rows[-1:])
    else:
        layers = {"layers": tuple(int(x) for x in args.layers.split(","))} if args.layers else {}
        known = known_counterfact(bundle, args.scan, args.min_prob)
        cases = build_cases(known, args.n, n_retain=6, n_probes=6)
        print(
            f"{len(known)} known facts in the first {args.scan} CounterFact val entries; {len(cases)} cases"
        )
        variants = {"gu": ("GU (projected)", True), "plain": ("no projection", False)}
        for label, projection in (variants[v] for v in args.variants.split(",")):
            cfg = UnlearnConfig(projection=projection, **layers, **base)
            recs = []
            for case in cases:
                rec = run_case(un, case, cfg)
                c = rec.forget[0]
                print(
                    f"  [{label}] {c.prompt!r} -> {c.target!r}: prob {c.prob_before:.3f}->{c.prob_after:.4f} "
                    f"rank {c.rank_before}->{c.rank_after}, retain |dp| {rec.retain_mean_abs_change:.4f}, "
                    f"probes |dp| {rec.probes_mean_abs_change:.4f}, steps {rec.steps}",
                    flush=True,
                )
                recs.append(rec)
            rows.append(summarise(label, recs))
    print(f"\nobjective {args.objective}, config {UnlearnConfig(**base).to_dict()}")
    print_table(rows)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
