"""``recsys inspect`` (why items rank where they do; which features matter; drift) and ``recsys report``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import typer
from rich.table import Table

from recsys.artifacts import RunError
from recsys.cli.common import fail, state
from recsys.console import console, out

if TYPE_CHECKING:
    from recsys.inspect import RunInspector
    from recsys.ranking.explain import ItemExplanation

app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=True,
    help="Why items rank where they do for a user; `inspect features` for the ranker as a whole.",
)
TOP_CONTRIBUTIONS = 3
"""Contributions shown per item in the terminal (all of them go to --out)."""

RUN_OPTION = typer.Option(None, "--run", help="Run id (default: the promoted run).")
RUNS_OPTION = typer.Option(None, "--runs", help="Runs folder (default: config pipeline.runs_dir).")


def _inspector(ctx: typer.Context, run_id: str | None, runs: Path | None) -> RunInspector:
    from recsys.inspect import RunInspector, resolve_run

    try:
        return RunInspector.open(resolve_run(state(ctx).config, run_id, runs))
    except (RunError, FileNotFoundError) as error:
        fail(str(error))


def _number(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Parquet, or CSV (list columns joined with ", ") by the file's suffix."""
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    elif path.suffix == ".csv":
        lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
        frame.with_columns(pl.col(lists).list.join(", ")).write_csv(path)
    else:
        fail(f"--out {path}: use a .parquet or .csv file")


def _top_contributions(row: dict[str, object], features: list[str]) -> str:
    from recsys.ranking.explain import contribution_column

    pairs = sorted(
        ((name, float(row[contribution_column(name)])) for name in features),  # type: ignore[arg-type]
        key=lambda pair: -abs(pair[1]),
    )
    return "\n".join(f"{name} {value:+.3f}" for name, value in pairs[:TOP_CONTRIBUTIONS])


def _history_table(inspector: RunInspector, user: str) -> Table:
    history = inspector.history(user)
    table = Table(title=f"user {user}: latest {history.height} items (newest first)", header_style="bold")
    for column in ("#", "item", "title"):
        table.add_column(column)
    for row in history.iter_rows(named=True):
        table.add_row(str(row["position"]), row["item_id"], row["title"] or "")
    return table


def _ranked_table(inspector: RunInspector, explained: pl.DataFrame, user: str) -> Table:
    bias = explained["bias"][0] if explained.height else 0.0
    table = Table(
        title=f"user {user}: top {explained.height} of run {inspector.run_dir.name}",
        caption=f"score = bias ({bias:+.3f}) + Σ contributions; largest |contribution| shown",
        header_style="bold",
    )
    for column in ("rank", "item", "title", "score", "sources", "top contributions"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in explained.iter_rows(named=True):
        table.add_row(
            str(row["rank"]),
            row["item_id"],
            row["title"] or "",
            f"{row['score']:.3f}",
            ", ".join(row["sources"]),
            _top_contributions(row, inspector.features),
        )
    return table


def _print_item(explanation: ItemExplanation, k: int, top: int) -> None:
    outside = explanation.rank is not None and explanation.rank > k
    note = f" — outside the top {k}" if outside else ""
    out.print(f"[bold]item {explanation.item_id}[/] ({explanation.status}): {explanation.reason}{note}")
    if explanation.score is not None and explanation.mean_score is not None:
        out.print(
            f"score {explanation.score:.4f} vs average candidate {explanation.mean_score:.4f}: "
            f"the difference is exactly Σ delta below"
        )
        table = Table(title="contributions vs the average candidate", header_style="bold")
        for column in ("feature", "value", "avg value", "contribution", "avg contribution", "delta"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        for row in explanation.contributions.head(top).iter_rows(named=True):
            table.add_row(
                row["feature"],
                _number(row["value"]),
                _number(row["mean_value"]),
                f"{row['contribution']:+.4f}",
                f"{row['mean_contribution']:+.4f}",
                f"{row['delta']:+.4f}",
            )
        out.print(table)
    if explanation.source_ranks.height:
        table = Table(title="where each candidate source put it", header_style="bold")
        for column in ("source", "rank", "score", "within per_source_k"):
            table.add_column(column)
        for row in explanation.source_ranks.iter_rows(named=True):
            table.add_row(row["source"], _number(row["rank"]), _number(row["score"]), str(row["within_k"]))
        out.print(table)


@app.callback()
def inspect_user(
    ctx: typer.Context,
    user: str | None = typer.Option(None, "--user", help="User id whose ranked candidates to explain."),
    item: str | None = typer.Option(
        None, "--item", help="Why this item ranked where it did (or not at all)."
    ),
    k: int = typer.Option(20, min=1, help="Ranked candidates shown."),
    output: Path | None = typer.Option(
        None,
        "--out",
        help="Write every shown candidate with all feature values and contributions (.parquet/.csv).",
    ),
    run_id: str | None = RUN_OPTION,
    runs: Path | None = RUNS_OPTION,
) -> None:
    """A user's ranked candidates: sources, feature values and exact contributions (summing to the score)."""
    if ctx.invoked_subcommand is not None:
        return
    if user is None:
        fail("give --user (or use `recsys inspect features`)")
    inspector = _inspector(ctx, run_id, runs)
    explained = inspector.user(user, k)
    if output is not None:
        write_table(explained, output)
        console.print(f"wrote {explained.height} candidates x {explained.width} columns to {output}")
    out.print(_history_table(inspector, user))
    out.print(_ranked_table(inspector, explained, user))
    if item is not None:
        _print_item(inspector.item(user, item), k, top=10)


def _frame_table(frame: pl.DataFrame, title: str, top: int) -> Table:
    table = Table(title=title, header_style="bold")
    for column in frame.columns:
        table.add_column(column, justify="left" if frame.schema[column] == pl.String else "right")
    for row in frame.head(top).iter_rows():
        table.add_row(*(_number(value) for value in row))
    return table


@app.command("features")
def inspect_features(
    ctx: typer.Context,
    top: int = typer.Option(15, min=1, help="Rows per table."),
    output: Path | None = typer.Option(
        None, "--out", help="Folder for importance/distributions/drift .parquet (every feature)."
    ),
    run_id: str | None = RUN_OPTION,
    runs: Path | None = RUNS_OPTION,
) -> None:
    """Global importance (gain, mean |contribution|), positives vs negatives, and drift since training."""
    given = ctx.parent.params if ctx.parent is not None else {}  # `recsys inspect --run R features` too
    inspector = _inspector(ctx, run_id or given.get("run_id"), runs or given.get("runs"))
    with console.status("scoring sample users' candidates and rebuilding the training frame"):
        tables = {
            "importance": inspector.importance(),
            "distributions": inspector.distributions(),
            "drift": inspector.drift(),
        }
    titles = {
        "importance": "feature importance: gain (training) and mean |contribution| (today's candidates)",
        "distributions": "positives vs negatives in the ranker's training frame (KS: how well it separates)",
        "drift": "drift: training window vs latest data (PSI > 0.25: major shift, 0.1-0.25: moderate)",
    }
    for name, frame in tables.items():
        out.print(_frame_table(frame, titles[name], top))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            frame.write_parquet(output / f"{name}.parquet")
        console.print(f"wrote {', '.join(tables)} to {output}")


def report(
    ctx: typer.Context,
    output: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
    users: int = typer.Option(3, min=1, help="Sample users whose contribution waterfalls are shown."),
    run_id: str | None = RUN_OPTION,
    runs: Path | None = RUNS_OPTION,
) -> None:
    """One self-contained HTML report of a run (plotly.js inline: opens offline)."""
    from recsys.report import build_report

    inspector = _inspector(ctx, run_id, runs)
    with console.status("computing the report's views"):
        path = build_report(inspector, output, waterfall_users=users)
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
