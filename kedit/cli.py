"""The `kedit` command line."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.table import Table

from kedit.errors import KeditError

app = typer.Typer(help="kedit: edit, insert, forget and query knowledge of a language model.", no_args_is_help=True)
console = Console()


@app.callback()
def _root() -> None:
    """kedit: edit, insert, forget and query knowledge of a language model."""

DEMO_PROMPTS = [
    "The capital of France is",
    "The Eiffel Tower is located in the city of",
    "Danielle Darrieux's mother tongue is",
    "The chemical symbol for gold is",
]


@app.command()
def demo(model: str = typer.Option("smollm2-135m", "--model", "-m", help="model name or path")) -> None:
    """Load a model and show what it answers to a few factual prompts."""
    from kedit.runtime import load_model

    with console.status(f"loading {model} ..."):
        bundle = load_model(model)
    how = "from the safetensors cache" if bundle.from_cache else "from GGUF (dequantised, now cached)"
    console.print(f"[bold]{bundle.name}[/] ({bundle.spec.family}) loaded in {bundle.load_seconds:.2f} s {how}")
    table = Table("prompt", "model's greedy completion")
    for prompt in DEMO_PROMPTS:
        table.add_row(prompt, bundle.complete(prompt, max_new_tokens=8).strip())
    console.print(table)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        app()
    except KeditError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
