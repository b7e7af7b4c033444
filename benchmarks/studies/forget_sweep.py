"""Learning-rate x steps sweep of the forgetting benchmark's methods, on tuning facts (counterfact-train).

One unlearning run per (method, lr), up to the largest checkpoint, measured at every checkpoint step
through `Unlearner.forget`'s `on_step` (called after a step's forward: the weights then carry that many
updates), so a run to 12 steps also gives the 3- and 6-step settings. A run that stops early (every fact
below the forget thresholds) counts its final state for the later checkpoints. Measured as the
benchmark's scalability run: VerbMem of the forgotten facts, top-1 answers kept of the held-aside facts,
of kedit's locality probes and of the facts' neighbourhood prompts (`forget_bench.measure(six=False)`).
Seconds exclude the checkpoint measurements.

The default is chosen for GU-NPO (`UnlearnConfig`'s objective) by `choose`: the lowest VerbMem among
settings that keep >= 0.8 of both the held-aside facts and the locality probes (fewer steps, then the
smaller lr, on ties).

    python -m benchmarks.studies.forget_sweep --data counterfact-train.json --scan 2500 --n 100 --held 100 \\
        --lrs 3e-4,1e-3,3e-3 --checkpoints 3,6,12 --out benchmarks/results/forget/sweep
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.studies import forget_bench
from kedit.unlearning import Unlearner

KEEP_FLOOR = 0.8


def sweep(
    bundle,
    facts: list[forget_bench.KnownFact],
    *,
    n: int,
    held: int,
    lrs: Sequence[float],
    checkpoints: Sequence[int],
    methods: Sequence[str],
    log: Callable[[str], None] = print,
) -> dict:
    """One row per (method, lr, checkpoint step); every run starts from the same weights (undone after)."""
    forget, retain, aside = forget_bench.split(facts, n, held, "sweep")
    before = forget_bench.measure(bundle, forget, aside, six=False)
    un = Unlearner(bundle)
    rows: list[dict] = []
    for method in methods:
        for lr in lrs:
            rows += _checkpointed_run(un, forget, retain, aside, before, method, lr, checkpoints)
            for row in rows[-len(checkpoints) :]:
                log(json.dumps(row))
    return {
        "known_facts": len(facts),
        "n": n,
        "held_aside": len(aside),
        "before": forget_bench.public(before),
        "rows": rows,
        "chosen": choose(rows),
    }


def _checkpointed_run(
    un: Unlearner,
    forget: list,
    retain: list,
    aside: list,
    before: dict,
    method: str,
    lr: float,
    checkpoints: Sequence[int],
) -> list[dict]:
    """One run of `method` at `lr` up to max(checkpoints) steps, measured at every checkpoint."""
    seen: dict[int, tuple[dict, float]] = {}
    spent = 0.0  # seconds spent measuring at checkpoints, left out of the run's time
    t0 = time.perf_counter()

    def at(step: int, info: dict) -> None:
        nonlocal spent
        if step in checkpoints:
            t = time.perf_counter()
            seen[step] = (forget_bench.measure(un.bundle, forget, aside, before, six=False), t - t0 - spent)
            spent += time.perf_counter() - t

    record, seconds = forget_bench.unlearn(
        un, forget, retain, method, {"lr": lr, "max_steps": max(checkpoints)}, on_step=at
    )
    final = (forget_bench.measure(un.bundle, forget, aside, before, six=False), seconds - spent)
    un.undo(record)
    rows = []
    for step in sorted(checkpoints):
        after, secs = seen.get(step) or final  # not reached: the run had stopped, its final state holds
        rows.append(
            {
                "method": method,
                "lr": lr,
                "max_steps": step,
                "steps": min(step, record.steps),
                "seconds": round(secs, 1),
                **{
                    k: after[k]
                    for k in ("verbmem", "forget_prob", "held_kept", "locality_kept", "neighbour_kept")
                },
            }
        )
    return rows


def choose(rows: Sequence[dict], method: str = "GU-NPO", floor: float = KEEP_FLOOR) -> dict | None:
    """The lowest-VerbMem setting of `method` keeping >= floor of held-aside facts and locality probes.

    >>> choose([{"method": "GU-NPO", "lr": 1e-3, "max_steps": 6, "verbmem": 0.2, "held_kept": 0.9, "locality_kept": 0.9},
    ...         {"method": "GU-NPO", "lr": 3e-3, "max_steps": 6, "verbmem": 0.0, "held_kept": 0.5, "locality_kept": 0.9}])["lr"]
    0.001
    """
    ok = [
        r for r in rows if r["method"] == method and r["held_kept"] >= floor and r["locality_kept"] >= floor
    ]
    return min(ok, key=lambda r: (r["verbmem"], r["max_steps"], r["lr"])) if ok else None


def markdown(result: dict) -> str:
    head = (
        "| method | lr | max steps | steps | s | VerbMem ↓ | held-aside kept ↑ | locality kept ↑ | neighbours kept ↑ |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    chosen = result["chosen"]
    body = "".join(
        f"| {r['method']} | {r['lr']:g} | {r['max_steps']} | {r['steps']} | {r['seconds']} | {r['verbmem']:.3f} | "
        f"{r['held_kept']:.3f} | {r['locality_kept']:.3f} | {r['neighbour_kept']:.3f} |"
        + (" ← chosen" if r is chosen or r == chosen else "")
        + "\n"
        for r in result["rows"]
    )
    b = result["before"]
    return (
        head + body + f"\nBefore: VerbMem {b['verbmem']:.3f} on {result['n']} facts; kept of {b['held_n']} "
        f"held-aside, {b['locality_n']} locality probes, {b['neighbour_n']} neighbourhood prompts answered before.\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    from kedit import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="CounterFact file (tune on train, not val)")
    ap.add_argument("--scan", type=int, default=None, help="first records scanned for known facts")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--held", type=int, default=100)
    ap.add_argument("--lrs", default="3e-4,1e-3,3e-3")
    ap.add_argument("--checkpoints", default="3,6,12")
    ap.add_argument("--methods", default="GU-NPO,NPO,GA")
    ap.add_argument("--out", type=Path, default=Path("runs/forget-sweep"))
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in forget_bench.METHODS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; choose from {', '.join(forget_bench.METHODS)}")
    rows = json.loads(args.data.read_text(encoding="utf-8"))[: args.scan]
    bundle = load_model(args.model)
    t0 = time.perf_counter()
    facts = forget_bench.known_facts(bundle, rows)
    print(f"{len(facts)} of {len(rows)} records known ({time.perf_counter() - t0:.0f} s)", flush=True)
    result = sweep(
        bundle,
        facts,
        n=args.n,
        held=args.held,
        lrs=[float(x) for x in args.lrs.split(",")],
        checkpoints=[int(x) for x in args.checkpoints.split(",")],
        methods=methods,
        log=lambda line: print(line, flush=True),
    )
    result |= {
        "data": args.data.name,
        "records": len(rows),
        "model": args.model,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=1))
    (args.out / "table.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
