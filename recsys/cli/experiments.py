"""``recsys experiments``: start, stop, list and show online experiments, and report on one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from recsys.cli.common import fail, state
from recsys.console import console, out

if TYPE_CHECKING:
    from recsys.experiments import ExperimentStore

METRICS = ("ctr", "clicks_per_user", "conversion")
"""The report's metrics (:data:`recsys.experiments.METRICS`; the library loads lazily: scipy is slow to
import for every other command)."""

app = typer.Typer(
    no_args_is_help=True, help="Online experiments: runs as arms over a stable split of users, and reports."
)

RunsOption = typer.Option(None, "--runs", help="Runs folder (default: config pipeline.runs_dir).")


def _store(ctx: typer.Context, runs: Path | None) -> ExperimentStore:
    from recsys.experiments import ExperimentStore

    return ExperimentStore(runs or Path(state(ctx).config.pipeline.runs_dir))


@app.command()
def start(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Experiment name (never reused)."),
    arms: list[str] = typer.Option(
        ...,
        "--arm",
        help="NAME=RUN:WEIGHT, e.g. control=run-a:50 (RUN @current: the promoted run); "
        "the first arm is the control.",
    ),
    window_s: int = typer.Option(
        1800,
        "--window-s",
        min=0,
        help="Events without a recommendation id count for the user's latest "
        "answer when they come within this many seconds after it.",
    ),
    click_events: list[str] = typer.Option(["click"], "--click-event", help="Event types that are clicks."),
    conversion_events: list[str] = typer.Option(
        ["purchase"], "--conversion-event", help="Event types that are conversions."
    ),
    runs: Path | None = RunsOption,
) -> None:
    """Start an experiment; servers pick it up on their next store check or POST /admin/reload."""
    from recsys.experiments import ExperimentError, parse_arm

    try:
        experiment = _store(ctx, runs).start(
            name, [parse_arm(arm) for arm in arms], window_s, click_events, conversion_events
        )
    except ExperimentError as error:
        fail(str(error))
    split = ", ".join(f"{arm.name}={arm.run} ({experiment.share(arm.name):.1%})" for arm in experiment.arms)
    out.print(f"started {experiment.name}: {split}")


@app.command()
def stop(ctx: typer.Context, name: str = typer.Argument(...), runs: Path | None = RunsOption) -> None:
    """Stop an experiment: every user is answered by the promoted run again (its log stays for the report)."""
    from recsys.experiments import ExperimentError

    try:
        _store(ctx, runs).stop(name)
    except ExperimentError as error:
        fail(str(error))
    out.print(f"stopped {name}")


@app.command("list")
def list_experiments(ctx: typer.Context, runs: Path | None = RunsOption) -> None:
    """Every experiment with its status and arms (one line each: names are never cut)."""
    from recsys.experiments import ExperimentError

    try:
        experiments = _store(ctx, runs).experiments()
    except ExperimentError as error:
        fail(str(error))
    for experiment in experiments:
        arms = ", ".join(f"{arm.name}={arm.run}:{arm.weight:g}" for arm in experiment.arms)
        when = f"started {experiment.started_at[:19]}"
        when += f", stopped {experiment.stopped_at[:19]}" if experiment.stopped_at else ""
        line = f"{experiment.name}  {experiment.status}  {arms}  ({when})"
        out.print(line, highlight=False, soft_wrap=True)


@app.command()
def show(ctx: typer.Context, name: str = typer.Argument(...), runs: Path | None = RunsOption) -> None:
    """Print an experiment's definition as JSON."""
    from recsys.experiments import ExperimentError

    try:
        out.print_json(json.dumps(_store(ctx, runs).get(name).to_json()))
    except ExperimentError as error:
        fail(str(error))


@app.command()
def report(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    metric: str = typer.Option("ctr", help=f"Primary metric, the verdict's: {', '.join(METRICS)}."),
    alpha: float = typer.Option(0.05, min=1e-6, max=0.5, help="Significance level (CIs at 1 - alpha)."),
    min_users: int = typer.Option(100, min=1, help="Exposed users each arm needs for a verdict."),
    html: Path | None = typer.Option(None, "--html", help="Also write the experiment page (HTML) here."),
    as_json: Path | None = typer.Option(None, "--json", help="Also write the whole analysis as JSON here."),
    runs: Path | None = RunsOption,
) -> None:
    """Per-arm exposure, click-through and conversion with confidence intervals, each arm against the
    control, the sample-ratio check and a verdict, from the online store's exposure log."""
    from feature_store.online import OnlineStoreError
    from recsys.experiments import ExperimentError, report_experiment

    config = state(ctx).config
    try:
        root = _store(ctx, runs).runs.root
        options = {"metric": metric, "alpha": alpha, "min_users": min_users}
        analysis = report_experiment(config.features, root, name, **options)
    except (ExperimentError, OnlineStoreError, ValueError) as error:
        fail(str(error))
    table = Table(title=f"experiment {name} ({analysis.experiment['status']})")
    for column in ("arm", "users", "exposures", "clicks", "converted", *METRICS):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm in analysis.arms:
        cells = [f"{e.value:.4f} [{e.ci_low:.4f}, {e.ci_high:.4f}]" for e in arm.metrics.values()]
        counts = [str(n) for n in (arm.users, arm.exposures, arm.clicks, arm.converted_users)]
        table.add_row(arm.arm, *counts, *cells)
    out.print(table)
    srm = analysis.srm
    mismatch = " MISMATCH" if srm.mismatch else ""
    out.print(f"sample ratio: chi-square {srm.chi2:.3f}, p = {srm.p_value:.3g}{mismatch}")
    out.print(f"verdict: {analysis.verdict}: {analysis.summary}")
    if as_json is not None:
        from recsys.artifacts import atomic_write_json

        atomic_write_json(as_json, analysis.to_json())
    if html is not None:
        from recsys.report import build_experiment_report

        with console.status("writing the experiment page"):
            path = build_experiment_report(analysis, html)
        out.print(f"wrote {path}")
