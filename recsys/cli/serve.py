"""``recsys serve``: the HTTP service (serving/) under uvicorn, over the promoted run."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from recsys.cli.common import state

ONE_THREAD = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""A request is small: math-library thread pools only make workers fight over cores. Scale with --workers."""


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface (default: serving.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: serving.port)."),
    runs: Path | None = typer.Option(None, "--runs", help="Runs folder (default: pipeline.runs_dir)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (about one per core)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve recommendations, similar items and live events over HTTP.

    Writes, admin routes and reads that reveal a user's history (explain, exclude_seen=false) need
    RECSYS_API_TOKEN in the environment (never a flag: it would show in the process list); without it
    they are refused. RECSYS_READ_TOKEN, when set, guards every /v1 route; RECSYS_METRICS_TOKEN, /metrics.
    """
    import uvicorn

    cli_state = state(ctx)
    config = cli_state.config
    if cli_state.config_path is not None:
        os.environ["RECSYS_CONFIG"] = str(cli_state.config_path.resolve())
    if runs is not None:
        os.environ["RECSYS_RUNS_DIR"] = str(runs.resolve())
    for name in ONE_THREAD:
        os.environ.setdefault(name, "1")
    uvicorn.run(
        "serving.app:app_from_env",
        factory=True,
        host=host or config.serving.host,
        port=port or config.serving.port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )
