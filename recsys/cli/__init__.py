"""The ``recsys`` command: one subcommand group per pipeline stage, all sharing ``--config``.

Commands are thin: they parse arguments, call one library function and print the result.
"""

from __future__ import annotations

from pathlib import Path

import typer

from recsys.cli import (
    config,
    data,
    embed,
    encoder,
    experiments,
    features,
    index,
    inspect,
    pipeline,
    runs,
    serve,
    users,
)
from recsys.cli.common import State

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config (default: configs/default.yaml, then RECSYS_* env)."
    ),
) -> None:
    ctx.obj = State(config_path=config)


app.add_typer(config.app, name="config")
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(runs.app, name="runs")
app.add_typer(experiments.app, name="experiments")
app.add_typer(users.app, name="users")
app.add_typer(encoder.app, name="encoder")
app.command("embed")(embed.embed)
app.add_typer(index.app, name="index")
app.command("similar")(index.similar)
app.add_typer(inspect.app, name="inspect")
app.command("report")(inspect.report)
pipeline.register(app)
app.command("serve")(serve.serve)


def main() -> None:
    app()
