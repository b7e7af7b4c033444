"""`bench` command line: `knowedit`, `mquake`, `compare`, `methods`, `forget`, ... (mounted by kedit as `kedit bench`).

    python -m benchmarks knowedit --data ../shared/data/KnowEdit/ZsRE --method rome --limit 20
    python -m benchmarks mquake --method memit --edits-per-batch 100 --limit 200
    python -m benchmarks compare runs/* --out report.md

Everything that can be checked without the model (data format, method name, output directory) is
checked before the model is loaded.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from benchmarks.loaders import KNOWEDIT_KINDS, BenchmarkDataError, Loaded, load_knowedit, load_mquake
from benchmarks.methods import available_methods, make_method, resolve_method, unavailable_methods
from kedit.errors import KeditError
from kedit.paths import require_data_dir

app = typer.Typer(
    name="bench",
    help="KnowEdit and MQuAKE benchmarks of kedit's editing methods.",
    no_args_is_help=True,
)
console = Console()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _report_malformed(loaded: Loaded) -> None:
    console.print(
        f"[bold]{len(loaded.cases)}[/] cases from {', '.join(loaded.files)} "
        f"({loaded.n_records} records, kind {loaded.kind})"
    )
    if loaded.malformed:
        console.print(f"[yellow]skipped {len(loaded.malformed)} malformed record(s):[/]")
        for m in loaded.malformed[:10]:
            console.print(f"  {m}")
        if len(loaded.malformed) > 10:
            console.print(f"  ... and {len(loaded.malformed) - 10} more (listed in summary.json)")


def _print_summary(summary: dict) -> None:
    table = Table("metric", "value (×100)", title=f"{summary['benchmark']} · {summary['method']} · {summary['model']}")
    for name, value in summary["metrics"].items():
        table.add_row(name, "–" if value is None else f"{100 * value:.2f}")
    console.print(table)
    state = "complete" if summary.get("complete") else "[yellow]incomplete[/]"
    console.print(f"{summary['n_cases']} cases, {summary['seconds']:.1f} s, {state}")


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/] {exc}")
    raise typer.Exit(2)


def _load_bundle(model: str):
    from kedit import load_model

    with console.status(f"loading {model} ..."):
        return load_model(model)


@app.command()
def methods() -> None:
    """List the methods that can run now, and what the others wait for."""
    table = Table("method", "benchmarks", "status")
    for name, info in available_methods().items():
        table.add_row(name, ", ".join(info.benchmarks), f"[green]available[/]: {info.summary}")
    for name, why in unavailable_methods().items():
        table.add_row(name, "", f"[yellow]not available[/]: {why}")
    console.print(table)


@app.command()
def knowedit(
    method: str = typer.Option(..., "--method", help="editing method (see `methods`)"),
    data: Path = typer.Option(None, "--data", help="KnowEdit-style file or directory [default: the shared data's files of --kind]"),
    kind: str = typer.Option(None, "--kind", help=f"data kind, detected if omitted: {' | '.join(KNOWEDIT_KINDS)}"),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    sadr: bool = typer.Option(False, "--sadr", help="add the SADR attention-drift regulariser (rome/memit/alphaedit)"),
    sequential: bool = typer.Option(False, "--sequential", help="edits accumulate (EasyEdit sequential_edit)"),
    limit: int = typer.Option(None, "--limit", min=1, help="first N usable cases only"),
    fluency: bool = typer.Option(True, "--fluency/--no-fluency", help="sample EasyEdit's fluency text per case"),
    seed: int = typer.Option(0, "--seed", help="seed of the fluency sampling (plus the case index)"),
    out: Path = typer.Option(None, "--out", help="run directory [default: runs/knowedit-<kind>-<method>-<model>]"),
    shard: str = typer.Option(None, "--shard", help="run only the i-th of n slices of the cases (i/n); see `merge`"),
    harness: str = typer.Option("batched", "--harness", help="batched | legacy (case by case; same numbers)"),
    pre_cache: Path = typer.Option(None, "--pre-cache", help="pre-edit score cache [default: ~/.cache/kedit/bench-pre.sqlite]"),
    no_pre_cache: bool = typer.Option(False, "--no-pre-cache", help="score every record's pre-edit probes afresh"),
) -> None:
    """KnowEdit: Edit Succ, rephrase, portability, locality, fluency, as EasyEdit computes them."""
    from benchmarks.knowedit import HARNESSES, KnowEditSettings, run_knowedit
    from benchmarks.pre_cache import PreScoreCache, default_cache_path
    from benchmarks.runs import RunDir, RunSpec, data_label
    from benchmarks.shards import Shard, ShardSpecError, shard_spec

    try:
        part = Shard.parse(shard) if shard is not None else None
        if harness not in HARNESSES:
            raise KeditError(f"--harness must be one of {', '.join(HARNESSES)}, not '{harness}'")
        if part is not None and sequential and part.count > 1:
            raise ShardSpecError("--shard cannot split a --sequential run: its edits accumulate over every case")
        # default: with --kind, every file of that kind in the shared data; without, KnowEdit/ (one kind needed)
        path = data if data is not None else (require_data_dir() if kind else require_data_dir() / "KnowEdit")
        loaded = load_knowedit(path, kind=kind, limit=limit)
        resolve_method(method, "knowedit", sadr)
        _report_malformed(loaded)
        settings = KnowEditSettings(loaded.kind, sequential, sadr, fluency, seed, limit)
        if part is not None:
            part.bounds(len(loaded.cases))  # a bad split fails before the model loads
        name = "-".join(["knowedit", loaded.kind, method] + (["sadr"] if sadr else []) + (["seq"] if sequential else []))
        name += f"-shard{part.index}of{part.count}" if part is not None and part.count > 1 else ""
        out = out or Path("runs") / _slug(f"{name}-{Path(model).stem}")
        spec = RunSpec("knowedit", data_label(path), method, model, shard_spec(asdict(settings), part))
        run = RunDir(out, spec)
        cache = None if no_pre_cache or harness == "legacy" else PreScoreCache(pre_cache or default_cache_path())
        bundle = _load_bundle(model)
        adapter = make_method(method, bundle, "knowedit", sadr)
        try:
            summary = run_knowedit(adapter, loaded, run, settings, console, harness=harness, cache=cache, shard=part)
        finally:
            adapter.close()
            if cache is not None:
                cache.close()
    except KeditError as exc:
        _fail(exc)
        return
    _print_summary(summary)
    console.print(f"written to {out}/")


@app.command()
def mquake(
    method: str = typer.Option(..., "--method", help="editing method (see `methods`)"),
    data: Path = typer.Option(None, "--data", help="MQuAKE file or directory [default: shared MQuAKE/]"),
    edits_per_batch: str = typer.Option("1", "--edits-per-batch", help="k cases' edits applied together: 1 | 100 | all"),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    limit: int = typer.Option(None, "--limit", min=1, help="first N usable cases only ('all' = these N)"),
    cot: bool = typer.Option(False, "--cot", help="chain-of-thought multi-hop prompt instead of the standard one"),
    probe_per_batch: int = typer.Option(
        None, "--probe-per-batch", min=1,
        help="score only the first M cases of each batch (its edits still come from all k cases)"),
    prompts_dir: Path = typer.Option(None, "--prompts", help="MQuAKE prompts/ directory [default: beside the data]"),
    out: Path = typer.Option(None, "--out", help="run directory [default: runs/mquake-k<k>-<method>-<model>]"),
    shard: str = typer.Option(None, "--shard", help="run only the i-th of n slices of the batches (i/n); see `merge`"),
) -> None:
    """MQuAKE: edit-wise, instance-wise, multi-hop accuracy and edited/unedited hop recall."""
    from benchmarks.mquake import MQuAKESettings, batches, run_mquake
    from benchmarks.prompts import load_mquake_prompts
    from benchmarks.runs import RunDir, RunSpec, data_label
    from benchmarks.shards import Shard, shard_spec

    try:
        part = Shard.parse(shard) if shard is not None else None
        settings = MQuAKESettings(edits_per_batch, cot, limit, probe_per_batch)  # bad settings before data
        path = data if data is not None else require_data_dir() / "MQuAKE"
        loaded = load_mquake(path, limit=limit)
        k = settings.batch_size(len(loaded.cases))
        if part is not None:
            part.bounds(len(batches(loaded.cases, k)))  # a bad split fails before the model loads
        resolve_method(method, "mquake")
        if prompts_dir is None:
            beside = (path if path.is_dir() else path.parent) / "prompts"
            prompts_dir = beside if beside.is_dir() else None
        prompts = load_mquake_prompts(prompts_dir)
        _report_malformed(loaded)
        name = f"mquake-k{edits_per_batch}-{method}" + ("-cot" if cot else "")
        name += f"-shard{part.index}of{part.count}" if part is not None and part.count > 1 else ""
        out = out or Path("runs") / _slug(f"{name}-{Path(model).stem}")
        spec = RunSpec("mquake", data_label(path), method, model, shard_spec(settings.spec(), part))
        run = RunDir(out, spec)
        bundle = _load_bundle(model)
        adapter = make_method(method, bundle, "mquake")
        try:
            summary = run_mquake(adapter, loaded, run, settings, prompts, console, shard=part)
        finally:
            adapter.close()
    except KeditError as exc:
        _fail(exc)
        return
    _print_summary(summary)
    console.print(f"written to {out}/")


@app.command()
def merge(
    dirs: list[Path] = typer.Argument(..., help="the shards' run directories (--shard 1/n ... n/n)"),
    out: Path = typer.Option(..., "--out", help="the merged run directory (new)"),
) -> None:
    """Combine shard runs into one run directory; the summary is recomputed from the merged cases."""
    from benchmarks.shards import merge_runs

    try:
        summary = merge_runs(dirs, out)
    except KeditError as exc:
        _fail(exc)
        return
    _print_summary(summary)
    console.print(f"written to {out}/")


@app.command()
def compare(
    dirs: list[Path] = typer.Argument(..., help="run directories (each with summary.json)"),
    out: Path = typer.Option(Path("report.md"), "--out", help="Markdown report"),
    plots: Path = typer.Option(None, "--plots", help="directory of the PNG plots [default: beside --out]"),
    header: Path = typer.Option(None, "--header", help="Markdown file put at the top of the report"),
) -> None:
    """Markdown table across runs and PNG plots (MQuAKE accuracy vs k; KnowEdit metrics per method)."""
    from benchmarks.compare import write_report

    try:
        text = header.read_text(encoding="utf-8") if header is not None else None
        written = write_report(dirs, out, plots, text)
    except (KeditError, OSError) as exc:
        _fail(exc)
        return
    for p in written:
        console.print(f"wrote {p}")


@app.command()
def conflicts(
    data: Path = typer.Option(None, "--data", help="MQuAKE file or directory [default: shared MQuAKE/]"),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    per_kind: int = typer.Option(20, "--per-kind", min=1, help="cases per conflict kind"),
    out: Path = typer.Option(Path("runs/conflicts"), "--out", help="run directory"),
) -> None:
    """Knowledge-preference conflict suite: share of answers obeying instruction > stored > passage > model."""
    from benchmarks.conflicts import main as run_conflicts

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
    from benchmarks.router_bench import main as run_router

    args = ["--model", model, "--mquake", str(mquake), "--zsre", str(zsre), "--out", str(out)]
    run_router(args + (["--data", str(data)] if data else []))


@app.command()
def forget(
    data: Path = typer.Option(None, "--data", help="CounterFact file [default: the shared counterfact-val.json]"),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    n: int = typer.Option(100, "--n", min=1, help="known facts to forget"),
    held: int = typer.Option(50, "--held", min=1, help="held-aside known facts (utility, never trained on)"),
    scale: int = typer.Option(1000, "--scale", min=0, help="forget requests of the scalability run (0: skip)"),
    scale_data: Path = typer.Option(None, "--scale-data", help="CounterFact file the scalability run's facts come "
                                    "from, e.g. counterfact-train.json [default: --data]"),
    scale_scan: int = typer.Option(None, "--scale-scan", min=1, help="first --scale-data records scanned [default: all]"),
    only_scale: bool = typer.Option(False, "--only-scale", help="the scalability run alone (needs --scale-data)"),
    requests: int = typer.Option(10, "--requests", min=0, help="requests the N facts arrive in (sustainability; 0: skip)"),
    scan: int = typer.Option(None, "--scan", min=1, help="first records scanned for known facts [default: all]"),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="unlearning steps per run at most [default: MANY_FACTS_MAX_STEPS, 6]"),
    lr: float = typer.Option(None, "--lr", help="unlearning learning rate [default: MANY_FACTS_LR, 3e-4]"),
    methods: str = typer.Option("GU-NPO,NPO,GA", "--methods", help="comma-separated: GU-NPO, NPO, GA"),
    out: Path = typer.Option(Path("runs/forget"), "--out", help="run directory (summary.json, table.md)"),
) -> None:
    """Forgetting, MUSE's six questions on facts: GU-NPO vs NPO vs gradient ascent on facts the model knows."""
    import json
    import time

    from benchmarks import forget_bench

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in forget_bench.METHODS]
    if unknown or not chosen:
        _fail(KeditError(f"unknown method(s) {unknown}; choose from {', '.join(forget_bench.METHODS)}"))
    from kedit.unlearning import MANY_FACTS_LR, MANY_FACTS_MAX_STEPS

    settings = {"max_steps": max_steps or MANY_FACTS_MAX_STEPS, "lr": lr or MANY_FACTS_LR}
    out.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:  # after each method, so a long run keeps what it measured
        result |= {"data": Path(path).name, "records": len(rows), "model": model,
                   "seconds": round(time.perf_counter() - t0, 1)}
        if scale_rows:
            result |= {"scale_data": Path(scale_path).name, "scale_records": len(scale_rows)}
        (out / "summary.json").write_text(json.dumps(result, indent=1))
        (out / "table.md").write_text(forget_bench.markdown(result))

    try:
        path = data or require_data_dir() / "CounterFact" / "counterfact-val.json"
        rows = [] if only_scale else json.loads(Path(path).read_text(encoding="utf-8"))[:scan]
        scale_path = scale_data or path
        scale_rows = json.loads(Path(scale_data).read_text(encoding="utf-8"))[:scale_scan] if scale_data else []
        bundle = _load_bundle(model)
        t0 = time.perf_counter()
        with console.status(f"scoring {len(rows) + len(scale_rows)} records for facts the model knows ..."):
            facts = forget_bench.known_facts(bundle, rows)
            scale_facts = forget_bench.known_facts(bundle, scale_rows) if scale_rows else None
        console.print(f"{len(facts)} of {len(rows)} records known" + (
            f", {len(scale_facts)} of {len(scale_rows)} in {Path(scale_path).name}" if scale_rows else "")
            + f" ({time.perf_counter() - t0:.0f} s)")
        if only_scale and not scale_facts:
            raise ValueError("--only-scale needs --scale-data (the facts of the scalability run)")
        result = forget_bench.run(bundle, facts, n=n, scale=scale, scale_facts=scale_facts, requests=requests,
                                  held=held, only_scale=only_scale, settings=settings, methods=chosen, on_method=save,
                                  log=lambda line: console.print(line, markup=False, highlight=False))
    except (KeditError, OSError, ValueError) as exc:
        _fail(exc)
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
