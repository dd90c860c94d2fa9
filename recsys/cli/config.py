"""``recsys config``: the effective configuration, and the documented defaults file."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from recsys.artifacts import atomic_write_text
from recsys.cli.common import state
from recsys.config import render_defaults

app = typer.Typer(no_args_is_help=True, help="Show the effective config; regenerate configs/default.yaml.")


@app.command()
def show(ctx: typer.Context) -> None:
    """Print the effective config (file + RECSYS_* env overrides) as YAML."""
    typer.echo(yaml.safe_dump(state(ctx).config.model_dump(), sort_keys=False), nl=False)


@app.command()
def defaults(
    out_file: Path | None = typer.Option(None, "--out", help="Write here instead of stdout."),
) -> None:
    """Every key with its default and documentation (the source of configs/default.yaml)."""
    if out_file is None:  # as it is: the console would wrap lines and read ``[a, b]`` as markup
        typer.echo(render_defaults(), nl=False)
    else:
        atomic_write_text(out_file, render_defaults())
