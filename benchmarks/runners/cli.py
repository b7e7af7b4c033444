"""The runner commands of `kedit bench` (`benchmarks.cli` mounts them): `knowedit`, `mquake`, `merge`,
`compare`, `methods`.

    kedit bench knowedit --data ../shared/data/KnowEdit/ZsRE --method rome --limit 20
    kedit bench mquake --method memit --edits-per-batch 100 --limit 200
    kedit bench compare runs/* --out report.md

Everything that can be checked without the model (data format, method name, output directory) is
checked before the model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from benchmarks.data.loaders import KNOWEDIT_KINDS, Loaded, load_knowedit, load_mquake
from benchmarks.methods.registry import available_methods, make_method, resolve_method
from benchmarks.runners.runs import format_interval
from kedit.errors import KeditError
from kedit.paths import require_data_dir

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
    table = Table(
        "metric",
        "value (×100) [95 % interval]",
        title=f"{summary['benchmark']} · {summary['method']} · {summary['model']}",
    )
    intervals = summary.get("intervals") or {}
    for name, value in summary["metrics"].items():
        table.add_row(name, format_interval(value, intervals.get(name)))
    console.print(table)
    state = "complete" if summary.get("complete") else "[yellow]incomplete[/]"
    console.print(f"{summary['n_cases']} cases, {summary['seconds']:.1f} s, {state}")


def fail(exc: Exception) -> None:
    console.print(f"[red]error:[/] {exc}")
    raise typer.Exit(2)


def load_bundle(model: str):
    from kedit import load_model

    with console.status(f"loading {model} ..."):
        return load_model(model)


def methods() -> None:
    """List the methods and the benchmarks each runs."""
    table = Table("method", "benchmarks", "what it is")
    for name, info in available_methods().items():
        table.add_row(name, ", ".join(info.benchmarks), info.summary)
    console.print(table)


def knowedit(
    method: str = typer.Option(..., "--method", help="editing method (see `methods`)"),
    data: Path = typer.Option(
        None, "--data", help="KnowEdit-style file or directory [default: the shared data's files of --kind]"
    ),
    kind: str = typer.Option(
        None, "--kind", help=f"data kind, detected if omitted: {' | '.join(KNOWEDIT_KINDS)}"
    ),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    sadr: bool = typer.Option(
        False, "--sadr", help="add the SADR attention-drift regulariser (rome/memit/alphaedit)"
    ),
    sequential: bool = typer.Option(
        False,
        "--sequential",
        help="apply every case's edit one after another, none undone, then score every case (EasyEdit sequential_edit)",
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="first N usable cases only"),
    fluency: bool = typer.Option(
        True, "--fluency/--no-fluency", help="sample EasyEdit's fluency text per case"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the fluency sampling (plus the case index)"),
    out: Path = typer.Option(
        None, "--out", help="run directory [default: runs/knowedit-<kind>-<method>-<model>]"
    ),
    shard: str = typer.Option(
        None, "--shard", help="run only the i-th of n slices of the cases (i/n); see `merge`"
    ),
    harness: str = typer.Option("batched", "--harness", help="batched | legacy (case by case; same numbers)"),
    pre_cache: Path = typer.Option(
        None, "--pre-cache", help="pre-edit score cache [default: ~/.cache/kedit/bench-pre.sqlite]"
    ),
    no_pre_cache: bool = typer.Option(
        False, "--no-pre-cache", help="score every record's pre-edit probes afresh"
    ),
) -> None:
    """KnowEdit: Edit Succ, rephrase, portability, locality, fluency, as EasyEdit computes them."""
    from benchmarks.runners.knowedit import HARNESSES, KnowEditSettings, run_knowedit
    from benchmarks.runners.pre_cache import PreScoreCache, default_cache_path
    from benchmarks.runners.runs import RunDir, RunSpec, data_label
    from benchmarks.runners.shards import Shard, ShardSpecError, shard_spec

    try:
        part = Shard.parse(shard) if shard is not None else None
        if harness not in HARNESSES:
            raise KeditError(f"--harness must be one of {', '.join(HARNESSES)}, not '{harness}'")
        if part is not None and sequential and part.count > 1:
            raise ShardSpecError(
                "--shard cannot split a --sequential run: its edits accumulate over every case"
            )
        # default: with --kind, every file of that kind in the shared data; without, KnowEdit/ (one kind needed)
        path = data if data is not None else (require_data_dir() if kind else require_data_dir() / "KnowEdit")
        loaded = load_knowedit(path, kind=kind, limit=limit)
        resolve_method(method, "knowedit", sadr)
        _report_malformed(loaded)
        settings = KnowEditSettings(loaded.kind, sequential, sadr, fluency, seed, limit)
        if part is not None:
            part.bounds(len(loaded.cases))  # a bad split fails before the model loads
        name = "-".join(
            ["knowedit", loaded.kind, method] + (["sadr"] if sadr else []) + (["seq"] if sequential else [])
        )
        name += f"-shard{part.index}of{part.count}" if part is not None and part.count > 1 else ""
        out = out or Path("runs") / _slug(f"{name}-{Path(model).stem}")
        spec = RunSpec("knowedit", data_label(path), method, model, shard_spec(asdict(settings), part))
        run = RunDir(out, spec)
        cache = (
            None if no_pre_cache or harness == "legacy" else PreScoreCache(pre_cache or default_cache_path())
        )
        bundle = load_bundle(model)
        adapter = make_method(method, bundle, "knowedit", sadr)
        try:
            summary = run_knowedit(
                adapter, loaded, run, settings, console, harness=harness, cache=cache, shard=part
            )
        finally:
            adapter.close()
            if cache is not None:
                cache.close()
    except KeditError as exc:
        fail(exc)
        return
    _print_summary(summary)
    console.print(f"written to {out}/")


def mquake(
    method: str = typer.Option(..., "--method", help="editing method (see `methods`)"),
    data: Path = typer.Option(None, "--data", help="MQuAKE file or directory [default: shared MQuAKE/]"),
    edits_per_batch: str = typer.Option(
        "1", "--edits-per-batch", help="k cases' edits applied together: 1 | 100 | all"
    ),
    model: str = typer.Option("smollm2-135m", "--model", help="smollm2-135m | gemma3-270m | path"),
    limit: int = typer.Option(None, "--limit", min=1, help="first N usable cases only ('all' = these N)"),
    cot: bool = typer.Option(
        False, "--cot", help="chain-of-thought multi-hop prompt instead of the standard one"
    ),
    sequential: bool = typer.Option(
        False,
        "--sequential",
        help="apply every batch one after another, none undone, then probe every case (sequential editing)",
    ),
    probe_per_batch: int = typer.Option(
        None,
        "--probe-per-batch",
        min=1,
        help="score only the first M cases of each batch (its edits still come from all k cases)",
    ),
    prompts_dir: Path = typer.Option(
        None, "--prompts", help="MQuAKE prompts/ directory [default: beside the data]"
    ),
    out: Path = typer.Option(
        None, "--out", help="run directory [default: runs/mquake-k<k>-<method>-<model>]"
    ),
    shard: str = typer.Option(
        None, "--shard", help="run only the i-th of n slices of the batches (i/n); see `merge`"
    ),
) -> None:
    """MQuAKE: edit-wise, instance-wise, multi-hop accuracy and edited/unedited hop recall."""
    from benchmarks.data.prompts import load_mquake_prompts
    from benchmarks.runners.mquake import MQuAKESettings, batches, run_mquake
    from benchmarks.runners.mquake_sequential import run_mquake_sequential
    from benchmarks.runners.runs import RunDir, RunSpec, data_label
    from benchmarks.runners.shards import Shard, ShardSpecError, shard_spec

    try:
        part = Shard.parse(shard) if shard is not None else None
        if part is not None and sequential and part.count > 1:
            raise ShardSpecError(
                "--shard cannot split a --sequential run: its edits accumulate over every case"
            )
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
        name = (
            f"mquake-k{edits_per_batch}-{method}" + ("-cot" if cot else "") + ("-seq" if sequential else "")
        )
        name += f"-shard{part.index}of{part.count}" if part is not None and part.count > 1 else ""
        out = out or Path("runs") / _slug(f"{name}-{Path(model).stem}")
        spec_settings = settings.spec() | ({"sequential": True} if sequential else {})  # older runs: no key
        spec = RunSpec("mquake", data_label(path), method, model, shard_spec(spec_settings, part))
        run = RunDir(out, spec)
        bundle = load_bundle(model)
        adapter = make_method(method, bundle, "mquake")
        try:
            if sequential:
                summary = run_mquake_sequential(adapter, loaded, run, settings, prompts, console)
            else:
                summary = run_mquake(adapter, loaded, run, settings, prompts, console, shard=part)
        finally:
            adapter.close()
    except KeditError as exc:
        fail(exc)
        return
    _print_summary(summary)
    console.print(f"written to {out}/")


def merge(
    dirs: list[Path] = typer.Argument(..., help="the shards' run directories (--shard 1/n ... n/n)"),
    out: Path = typer.Option(..., "--out", help="the merged run directory (new)"),
) -> None:
    """Combine shard runs into one run directory; the summary is recomputed from the merged cases."""
    from benchmarks.runners.shards import merge_runs

    try:
        summary = merge_runs(dirs, out)
    except KeditError as exc:
        fail(exc)
        return
    _print_summary(summary)
    console.print(f"written to {out}/")


def compare(
    dirs: list[Path] = typer.Argument(..., help="run directories (each with summary.json)"),
    out: Path = typer.Option(Path("report.md"), "--out", help="Markdown report"),
    plots: Path = typer.Option(None, "--plots", help="directory of the PNG plots [default: beside --out]"),
    header: Path = typer.Option(None, "--header", help="Markdown file put at the top of the report"),
) -> None:
    """Markdown table across runs and PNG plots (MQuAKE accuracy vs k; KnowEdit metrics per method)."""
    from benchmarks.runners.compare import write_report

    try:
        text = header.read_text(encoding="utf-8") if header is not None else None
        written = write_report(dirs, out, plots, text)
    except (KeditError, OSError) as exc:
        fail(exc)
        return
    for p in written:
        console.print(f"wrote {p}")


COMMANDS = (methods, knowedit, mquake, merge, compare)
