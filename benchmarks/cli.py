"""`bench` command line, mounted by kedit as `kedit bench` (`python -m benchmarks ...` runs the same):

- the runners (`benchmarks.runners.cli`): `knowedit`, `mquake`, `merge`, `compare`, `methods`;
- studies with options of their own: `conflicts`, `router`, `forget`;
- every study by name: `kedit bench study NAME [ARGS]` (`kedit bench study` lists them).

    kedit bench knowedit --data ../shared/data/KnowEdit/ZsRE --method rome --limit 20
    kedit bench study edit_speed --n 4 --steps 0 --baseline
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from benchmarks import studies
from benchmarks.data.loaders import BenchmarkDataError
from benchmarks.runners.cli import COMMANDS, console, fail, load_bundle
from kedit.errors import KeditError
from kedit.paths import require_data_dir

app = typer.Typer(
    name="bench",
    help="KnowEdit and MQuAKE benchmarks of kedit's editing methods, and the measurement studies.",
    no_args_is_help=True,
)
for _command in COMMANDS:
    app.command()(_command)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "allow_interspersed_args": False})
def study(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="the study (omit to list them); the arguments after it are its own"),
) -> None:
    """Run a measurement study, as `python -m benchmarks.studies.NAME ARGS` does (`NAME --help`: its options)."""
    if name is None:
        for known in studies.STUDIES:
            console.print(f"{known:<17} {studies.describe(known)}", markup=False, highlight=False, soft_wrap=True)
        return
    if name in studies.COMMAND_OF:
        typer.main.get_command(app).main([studies.COMMAND_OF[name], *ctx.args], prog_name="kedit bench")
        return
    try:
        studies.run(name, ctx.args)
    except studies.UnknownStudyError as exc:
        fail(exc)


@app.command()
def conflicts(
    data: Path = typer.Option(None, "--data", help="MQuAKE file or directory [default: shared MQuAKE/]"),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    per_kind: int = typer.Option(20, "--per-kind", min=1, help="cases per conflict kind"),
    out: Path = typer.Option(Path("runs/conflicts"), "--out", help="run directory"),
) -> None:
    """Knowledge-preference conflict suite: share of answers obeying instruction > stored > passage > model."""
    from benchmarks.studies.conflicts import main as run_conflicts

    args = ["--model", model, "--per-kind", str(per_kind), "--out", str(out)]
    run_conflicts(args + (["--data", str(data)] if data else []))


@app.command()
def router(
    data: Path = typer.Option(None, "--data", help="shared data directory [default: ../shared/data]"),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    mquake: int = typer.Option(20, "--mquake", min=1, help="MQuAKE dev cases (edits + multi-hop questions)"),
    zsre: int = typer.Option(10, "--zsre", min=0, help="KnowEdit ZsRE cases (edits + locality questions)"),
    out: Path = typer.Option(Path("runs/router"), "--out", help="run directory"),
) -> None:
    """The router against always-parametric and always-store: edit success, locality, multi-hop."""
    from benchmarks.studies.router_bench import main as run_router

    args = ["--model", model, "--mquake", str(mquake), "--zsre", str(zsre), "--out", str(out)]
    run_router(args + (["--data", str(data)] if data else []))


@app.command()
def forget(
    data: Path = typer.Option(None, "--data", help="CounterFact file [default: the shared counterfact-val.json]"),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    n: int = typer.Option(100, "--n", min=1, help="known facts to forget"),
    held: int = typer.Option(50, "--held", min=1, help="held-aside known facts (utility, never trained on)"),
    scale: int = typer.Option(1000, "--scale", min=0, help="forget requests of the scalability run (0: skip)"),
    requests: int = typer.Option(10, "--requests", min=0, help="requests the N facts arrive in (sustainability; 0: skip)"),
    scan: int = typer.Option(None, "--scan", min=1, help="first records scanned for known facts [default: all]"),
    max_steps: int = typer.Option(20, "--max-steps", min=1, help="unlearning steps per run at most"),
    lr: float = typer.Option(1e-4, "--lr", help="unlearning learning rate"),
    methods: str = typer.Option("GU-NPO,NPO,GA", "--methods", help="comma-separated: GU-NPO, NPO, GA"),
    out: Path = typer.Option(Path("runs/forget"), "--out", help="run directory (summary.json, table.md)"),
) -> None:
    """Forgetting, MUSE's six questions on facts: GU-NPO vs NPO vs gradient ascent on facts the model knows."""
    import json
    import time

    from benchmarks.studies import forget_bench

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in forget_bench.METHODS]
    if unknown or not chosen:
        fail(KeditError(f"unknown method(s) {unknown}; choose from {', '.join(forget_bench.METHODS)}"))
    try:
        path = data or require_data_dir() / "CounterFact" / "counterfact-val.json"
        rows = json.loads(Path(path).read_text(encoding="utf-8"))[:scan]
        bundle = load_bundle(model)
        t0 = time.perf_counter()
        with console.status(f"scoring {len(rows)} records for facts the model knows ..."):
            facts = forget_bench.known_facts(bundle, rows)
        console.print(f"{len(facts)} of {len(rows)} records known ({time.perf_counter() - t0:.0f} s)")
        result = forget_bench.run(bundle, facts, n=n, scale=scale, requests=requests, held=held,
                                  settings={"max_steps": max_steps, "lr": lr}, methods=chosen,
                                  log=lambda line: console.print(line, markup=False, highlight=False))
    except (KeditError, OSError, ValueError) as exc:
        fail(exc)
        return
    result |= {"data": Path(path).name, "records": len(rows), "model": model,
               "seconds": round(time.perf_counter() - t0, 1), "notes": forget_bench.extrapolation(result)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    table = forget_bench.markdown(result)
    (out / "table.md").write_text(table + "".join(f"\n{note}" for note in result["notes"]) + "\n")
    console.print(table, markup=False, highlight=False)
    for note in result["notes"]:
        console.print(note, markup=False, highlight=False)
    console.print(f"written to {out}/ ({result['seconds']:.0f} s)")


def main() -> None:
    """Entry point of `python -m benchmarks`."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except BenchmarkDataError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
