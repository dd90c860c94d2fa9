"""``recsys users``: forget users everywhere, or export what is held about one (JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from recsys.cli.common import fail, state
from recsys.console import out

app = typer.Typer(no_args_is_help=True, help="Personal data: forget users, export what is held about a user.")

RunsOption = typer.Option(None, "--runs", help="Runs folder (default: config pipeline.runs_dir).")


@app.command()
def forget(
    ctx: typer.Context,
    users: list[str] = typer.Argument(..., help="User ids to forget."),
    runs: Path | None = RunsOption,
) -> None:
    """Remove users from the online store and its event log, rewrite retained runs without them, and
    record tombstones so every later run drops them when it loads data."""
    from feature_store.online import OnlineStoreError
    from recsys.privacy import PrivacyError, forget_users

    config = state(ctx).config
    try:
        done = forget_users(config, runs or Path(config.pipeline.runs_dir), users)
    except (OnlineStoreError, PrivacyError) as error:
        fail(str(error))
    out.print(
        f"forgot {len(users)} user(s): {done.tombstones} new tombstone(s), "
        f"{done.store_entries} online store entries removed, {len(done.files)} run file(s) rewritten"
    )


@app.command()
def export(
    ctx: typer.Context, user: str = typer.Argument(..., help="User id."), runs: Path | None = RunsOption
) -> None:
    """Print, as JSON, what is held about a user: history and batch recommendations of the promoted
    run, and the online store's state, logged events, experiment exposures and attributed events."""
    from feature_store.online import OnlineStoreError
    from recsys.privacy import PrivacyError, export_user

    config = state(ctx).config
    try:
        held = export_user(config, runs or Path(config.pipeline.runs_dir), user)
    except (OnlineStoreError, PrivacyError) as error:
        fail(str(error))
    out.print_json(json.dumps(held, default=str))
