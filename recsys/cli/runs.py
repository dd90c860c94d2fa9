"""``recsys runs``: list, show, promote, roll back and prune versioned runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from recsys.artifacts import RunError, RunStore
from recsys.cli.common import fail, state
from recsys.console import out

app = typer.Typer(no_args_is_help=True, help="Versioned runs: list, show, promote, rollback, prune.")

RunsOption = typer.Option(None, "--runs", help="Runs folder (default: config pipeline.runs_dir).")


def _store(ctx: typer.Context, runs: Path | None) -> RunStore:
    return RunStore(runs or Path(state(ctx).config.pipeline.runs_dir))


@app.command("list")
def list_runs(ctx: typer.Context, runs: Path | None = RunsOption) -> None:
    """Every finished run with its status and headline metric."""
    table = Table()
    for column in ("run", "status", "ndcg@10", "recall@100", "created", "parent"):
        # ids and times are copied into other commands: never wrapped or cut
        table.add_column(column, no_wrap=column in ("run", "created", "parent"))
    try:
        manifests = _store(ctx, runs).list_runs()
    except RunError as error:
        fail(str(error))
    for manifest in manifests:
        metrics = manifest.get("metrics", {}).get("recsys", {})
        status = manifest.get("status", "?") + (" (current)" if manifest["current"] else "")
        table.add_row(
            manifest["run_id"],
            status,
            f"{metrics.get('ndcg@10', float('nan')):.4f}",
            f"{metrics.get('recall@100', float('nan')):.4f}",
            str(manifest.get("created_at", "")),
            str(manifest.get("parent_run") or ""),
        )
    out.print(table)


@app.command()
def show(
    ctx: typer.Context, run_id: str = typer.Argument(..., help="Run id."), runs: Path | None = RunsOption
) -> None:
    """Print a run's manifest (config, data range, versions, metrics)."""
    try:
        out.print_json(json.dumps(_store(ctx, runs).manifest(run_id)))
    except RunError as error:
        fail(str(error))


@app.command()
def promote(ctx: typer.Context, run_id: str = typer.Argument(...), runs: Path | None = RunsOption) -> None:
    """Make a run current (bypasses the quality gate: an operator's decision)."""
    try:
        _store(ctx, runs).promote(run_id, reason="manual promote")
    except RunError as error:
        fail(str(error))
    out.print(f"current run: {run_id}")


@app.command()
def rollback(ctx: typer.Context, runs: Path | None = RunsOption) -> None:
    """Make the previously promoted run current again."""
    try:
        target = _store(ctx, runs).rollback()
    except RunError as error:
        fail(str(error))
    out.print(f"current run: {target}")


@app.command()
def prune(
    ctx: typer.Context,
    keep: int = typer.Option(..., "--keep", min=0, help="How many of the newest runs to keep."),
    runs: Path | None = RunsOption,
) -> None:
    """Delete old runs; the promoted run, its rollback target and the runs a running experiment
    serves are always kept."""
    from recsys.experiments import ExperimentError, ExperimentStore

    store = _store(ctx, runs)
    try:
        removed = store.prune(keep, also_keep=ExperimentStore(store.root).running_runs)
    except (RunError, ExperimentError) as error:
        fail(str(error))
    out.print(f"removed {len(removed)} runs: {', '.join(removed)}" if removed else "nothing to remove")
