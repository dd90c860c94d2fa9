"""``recsys features``: materialize the feature views, show one user's (and item's) values."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from recsys.cli.common import load_data, state
from recsys.console import console, out
from recsys.data import Dataset

app = typer.Typer(
    no_args_is_help=True, help="Behavioural features: point-in-time materialization and inspection."
)

DATA_HELP = "Dataset folder (items.* and interactions.*)."
AS_OF_HELP = "Unix seconds; only events strictly before it count (default: just after the last event)."


def _load(ctx: typer.Context, data: Path, as_of: int | None) -> tuple[Dataset, int]:
    dataset = load_data(ctx, data)
    return dataset, as_of if as_of is not None else dataset.time_range[1] + 1


@app.command()
def materialize(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    as_of: int | None = typer.Option(None, "--as-of", help=AS_OF_HELP),
    out_dir: Path = typer.Option(..., "--out", help="Folder for one parquet file per view."),
) -> None:
    """Compute every feature view as of a moment and write it as parquet."""
    from feature_store.offline import materialize as materialize_views
    from feature_store.offline import write_materialized

    dataset, moment = _load(ctx, data, as_of)
    with console.status("materializing feature views"):
        frames = materialize_views(dataset.interactions, dataset.items, moment, state(ctx).config.features)
        write_materialized(frames, out_dir, as_of=moment)
    table = Table(title=f"feature views as of {moment} → {out_dir}")
    table.add_column("view")
    table.add_column("rows", justify="right")
    for name, frame in frames.items():
        table.add_row(name, f"{frame.height:,}")
    out.print(table)


@app.command()
def show(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    user: str = typer.Option(..., "--user", help="User id."),
    item: str | None = typer.Option(None, "--item", help="Item id; without it only user features are shown."),
    as_of: int | None = typer.Option(None, "--as-of", help=AS_OF_HELP),
) -> None:
    """Print the feature values of one user (and item) as of a moment."""
    from feature_store.offline import explain_features

    dataset, moment = _load(ctx, data, as_of)
    values = explain_features(
        dataset.interactions, dataset.items, user, item, moment, state(ctx).config.features
    )
    subject = f"user {user}" + (f" × item {item}" if item else "")
    table = Table(title=f"features of {subject} as of {moment}")
    for column, justify in (("view", "left"), ("feature", "left"), ("value", "right"), ("meaning", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for view, name, value, description in values:
        table.add_row(view, name, f"{value:,.4g}", description)
    out.print(table)
