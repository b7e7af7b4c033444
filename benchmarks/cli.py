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


@app.command(
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
    }
)
def study(
    ctx: typer.Context,
    name: str = typer.Argument(
        None, help="the study (omit to list them); the arguments after it are its own"
    ),
) -> None:
    """Run a measurement study, as `python -m benchmarks.studies.NAME ARGS` does (`NAME --help`: its options)."""
    if name is None:
        for known in studies.STUDIES:
            console.print(
                f"{known:<17} {studies.describe(known)}", markup=False, highlight=False, soft_wrap=True
            )
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
    data: Path = typer.Option(
        None, "--data", help="CounterFact file [default: the shared counterfact-val.json]"
    ),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    n: int = typer.Option(100, "--n", min=1, help="known facts to forget"),
    held: int = typer.Option(50, "--held", min=1, help="held-aside known facts (utility, never trained on)"),
    scale: int = typer.Option(
        1000, "--scale", min=0, help="forget requests of the scalability run (0: skip)"
    ),
    scale_data: Path = typer.Option(
        None,
        "--scale-data",
        help="CounterFact file the scalability run's facts come "
        "from, e.g. counterfact-train.json [default: --data]",
    ),
    scale_scan: int = typer.Option(
        None, "--scale-scan", min=1, help="first --scale-data records scanned [default: all]"
    ),
    only_scale: bool = typer.Option(
        False, "--only-scale", help="the scalability run alone (needs --scale-data)"
    ),
    requests: int = typer.Option(
        10, "--requests", min=0, help="requests the N facts arrive in (sustainability; 0: skip)"
    ),
    scan: int = typer.Option(
        None, "--scan", min=1, help="first records scanned for known facts [default: all]"
    ),
    max_steps: int = typer.Option(
        None, "--max-steps", min=1, help="unlearning steps per run at most [default: MANY_FACTS_MAX_STEPS, 6]"
    ),
    lr: float = typer.Option(None, "--lr", help="unlearning learning rate [default: MANY_FACTS_LR, 3e-4]"),
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
    from kedit.unlearning import MANY_FACTS_LR, MANY_FACTS_MAX_STEPS

    settings = {"max_steps": max_steps or MANY_FACTS_MAX_STEPS, "lr": lr or MANY_FACTS_LR}
    out.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:  # after each method, so a long run keeps what it measured
        result |= {
            "data": Path(path).name,
            "records": len(rows),
            "model": model,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if scale_rows:
            result |= {"scale_data": Path(scale_path).name, "scale_records": len(scale_rows)}
        (out / "summary.json").write_text(json.dumps(result, indent=1))
        (out / "table.md").write_text(forget_bench.markdown(result))

    try:
        path = data or require_data_dir() / "CounterFact" / "counterfact-val.json"
        rows = [] if only_scale else json.loads(Path(path).read_text(encoding="utf-8"))[:scan]
        scale_path = scale_data or path
        scale_rows = (
            json.loads(Path(scale_data).read_text(encoding="utf-8"))[:scale_scan] if scale_data else []
        )
        bundle = load_bundle(model)
        t0 = time.perf_counter()
        with console.status(f"scoring {len(rows) + len(scale_rows)} records for facts the model knows ..."):
            facts = forget_bench.known_facts(bundle, rows)
            scale_facts = forget_bench.known_facts(bundle, scale_rows) if scale_rows else None
        console.print(
            f"{len(facts)} of {len(rows)} records known"
            + (f", {len(scale_facts)} of {len(scale_rows)} in {Path(scale_path).name}" if scale_rows else "")
            + f" ({time.perf_counter() - t0:.0f} s)"
        )
        if only_scale and not scale_facts:
            raise ValueError("--only-scale needs --scale-data (the facts of the scalability run)")
        result = forget_bench.run(
            bundle,
            facts,
            n=n,
            scale=scale,
            scale_facts=scale_facts,
            requests=requests,
            held=held,
            only_scale=only_scale,
            settings=settings,
            methods=chosen,
            on_method=save,
            log=lambda line: console.print(line, markup=False, highlight=False),
        )
    except (KeditError, OSError, ValueError) as exc:
        fail(exc)
        return
    save(result)
    console.print(forget_bench.markdown(result), markup=False, highlight=False)
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
