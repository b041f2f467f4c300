"""`w2v2 models`: the model names `--model` takes, with where each comes from and its licence."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table

from ..hub import MODELS
from . import app


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print the table as JSON.")):
    """List the models `--model NAME` takes (any Hub repo id org/name or org/name@revision works too)."""
    if as_json:
        print(json.dumps([asdict(entry) for entry in MODELS.values()], indent=2, ensure_ascii=False))
        return
    table = Table(title="models by name (w2v2 download NAME fetches one ahead of time)", title_justify="left")
    for column in ("name", "repo", "revision", "languages", "size", "licence"):
        table.add_column(column, no_wrap=column in ("name", "repo", "licence"), overflow="fold")
    for entry in MODELS.values():
        size = f"{entry.params_m:g}M params, {entry.download_mb:,} MB"
        table.add_row(entry.name, entry.repo_id or "(in the package)", entry.revision or "-", entry.languages, size,
                      entry.licence)
    # Piped, Rich would lay the table out for 80 columns and fold names: give it the width of its widest row.
    Console(width=None if sys.stdout.isatty() else 160).print(table)
