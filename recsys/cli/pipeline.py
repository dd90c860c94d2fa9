"""``recsys run`` (the whole nightly pipeline) and ``recsys recommend`` (batch or one user)."""

from __future__ import annotations

from pathlib import Path
from typing import cast, get_args

import typer
from rich.table import Table

from recsys.artifacts import RunError
from recsys.cli.common import fail, state
from recsys.config import AsOf
from recsys.console import out
from recsys.data import DataValidationError
from recsys.data.readers import DataFileError


def run(
    ctx: typer.Context,
    data: Path | None = typer.Option(
        None, "--data", help="Input folder (default: config pipeline.data_dir)."
    ),
    runs: Path | None = typer.Option(None, "--runs", help="Runs folder (default: config pipeline.runs_dir)."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Resume or rewrite this run (default: a new id)."
    ),
    force: bool = typer.Option(False, help="Recompute stages that already finished."),
) -> None:
    """The nightly pipeline: validate → features → encoder → embeddings → index → candidates →
    ranker → evaluation → batch recommendations → quality gate and promotion."""
    from recsys.pipeline import RunContext, run_pipeline

    context = RunContext.create(state(ctx).config, data, runs, run_id)
    try:
        run_dir, promoted, reason = run_pipeline(context, force=force)
    except (DataValidationError, DataFileError, RunError) as error:
        fail(str(error))
    verdict = "[green]promoted[/]" if promoted else "[yellow]not promoted[/]"
    out.print(f"run {context.run_id} → {run_dir}: {verdict} ({reason})")


def as_of_option(value: str | None) -> AsOf | None:
    """``--as-of`` checked against the config's choices (None: the run's own)."""
    if value is None:
        return None
    choices = get_args(AsOf)
    if value not in choices:
        fail(f"--as-of must be one of {', '.join(choices)} (got {value!r})")
    return cast(AsOf, value)


def recommend(
    ctx: typer.Context,
    user: str | None = typer.Option(None, "--user", help="One user id: print titles, scores, sources."),
    users: Path | None = typer.Option(None, "--users", help="Parquet/CSV with a user_id column (batch)."),
    output: Path | None = typer.Option(None, "--out", help="Batch output Parquet (with --users)."),
    k: int = typer.Option(10, min=1, help="Recommendations per user."),
    run_id: str | None = typer.Option(None, "--run", help="Run id (default: the promoted run)."),
    runs: Path | None = typer.Option(None, "--runs", help="Runs folder (default: config pipeline.runs_dir)."),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="now | last_event | auto: where users are placed in time (default: the run's recommend.as_of).",
    ),
) -> None:
    """Recommendations from a run; unknown users get the fallback (recent popularity)."""
    from recsys.batch import load_users, recommend_users, write_batch

    if (user is None) == (users is None):
        fail("give exactly one of --user or --users")
    if users is not None and output is None:
        fail("--users needs --out")
    config = state(ctx).config
    moment = as_of_option(as_of)
    try:
        if users is not None and output is not None:
            user_ids = load_users(users)
            rows = write_batch(config, user_ids, k, output, run_id, runs, moment)
            out.print(f"wrote {rows} recommendations for {len(user_ids)} users to {output}")
            return
        recs, items = recommend_users(config, [str(user)], k, run_id, runs, moment)
    except (RunError, ValueError, FileNotFoundError) as error:
        fail(str(error))
    shown = recs.join(items.select("item_id", "title"), on="item_id", how="left").sort("rank")
    fallback = bool(shown["fallback"].any()) if shown.height else True
    table = Table(title=f"user {user}" + (" (unknown user: fallback)" if fallback else ""))
    for column in ("rank", "item", "title", "score", "sources"):
        table.add_column(column)
    for row in shown.iter_rows(named=True):
        table.add_row(
            str(row["rank"]),
            row["item_id"],
            row["title"] or "",
            f"{row['score']:.3f}",
            ", ".join(row["sources"]),
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(recommend)


__all__ = ["register"]
