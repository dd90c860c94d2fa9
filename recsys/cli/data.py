"""``recsys data``: generate the demo catalog, validate a dataset folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from recsys.cli.common import fail, state
from recsys.console import console, out
from recsys.data import DataValidationError, TableReport, load_dataset
from recsys.data.demo import DemoSpec, Regime, write_demo
from recsys.data.readers import DataFileError

app = typer.Typer(no_args_is_help=True, help="Demo catalog and input validation.")


@app.command()
def demo(
    ctx: typer.Context,
    out_dir: Path = typer.Option(
        Path("demo-data"), "--out", help="Folder to write items/interactions.parquet."
    ),
    users: int | None = typer.Option(None, help="Number of users (default: config demo.users)."),
    items: int | None = typer.Option(None, help="Number of items."),
    events: int | None = typer.Option(None, help="Number of interactions."),
    seed: int | None = typer.Option(None, help="Random seed; the same seed gives the same files."),
    regime: Regime | None = typer.Option(
        None,
        help="default: dense, steady tastes. releases: new items with a burst of popularity that fades. "
        "shop: most users with one or two events, long tail. sessions: long sessions of related items. "
        "drift: tastes move slowly (default: config demo.regime).",
    ),
) -> None:
    """Generate the built-in demo catalog (seeded, deterministic)."""
    cfg = state(ctx).config.demo
    spec = DemoSpec(
        users=users or cfg.users,
        items=items or cfg.items,
        events=events or cfg.events,
        topics=cfg.topics,
        days=cfg.days,
        seed=cfg.seed if seed is None else seed,
        regime=regime or cfg.regime,
    )
    with console.status("generating demo catalog"):
        items_path, events_path = write_demo(out_dir, spec)
    console.print(
        f"wrote {items_path} and {events_path}"
        f" ({spec.regime} regime: {spec.items} items, {spec.events} events)"
    )


def _print_report(report: TableReport) -> None:
    table = Table(title=f"{report.path.name}: {report.bad_rows} bad of {report.rows} rows")
    for column in ("reason", "field", "rows", "example rows"):
        table.add_column(column)
    for entry in report.by_reason:
        examples = entry["examples"]
        assert isinstance(examples, list)
        shown = ", ".join(f"row {e['row']}" for e in examples)  # never the values: rows may be personal data
        table.add_row(str(entry["reason"]), str(entry["field"]), str(entry["count"]), shown)
    if report.by_reason:
        out.print(table)


@app.command()
def validate(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., help="Folder with items.* and interactions.* (parquet/csv/jsonl)."),
    quarantine: Path | None = typer.Option(
        None, help="Where bad rows go (default: quarantine/<folder name>)."
    ),
    max_bad_share: float | None = typer.Option(
        None, help="Fail above this share of bad rows (config data.max_bad_share)."
    ),
) -> None:
    """Validate a dataset folder: bad rows to quarantine, summary per reason, fail above the threshold."""
    cfg = state(ctx).config.data
    quarantine = quarantine or Path("quarantine") / folder.resolve().name
    try:
        dataset = load_dataset(
            folder,
            max_bad_share=cfg.max_bad_share if max_bad_share is None else max_bad_share,
            as_of=cfg.as_of,
            quarantine_dir=quarantine,
        )
    except (DataValidationError, DataFileError) as error:
        fail(str(error))
    for report in (dataset.items_report, dataset.interactions_report):
        _print_report(report)
    stats = dataset.stats
    start, end = dataset.time_range
    out.print(
        f"{folder}: {stats['users']:,} users, {stats['items']:,} items, "
        f"{stats['interactions']:,} interactions, "
        f"{stats['bad_rows']:,} bad rows (quarantine: {quarantine})"
    )
    out.print(f"time range: {start} .. {end}")
