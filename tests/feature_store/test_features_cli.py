"""``recsys features materialize`` and ``show`` on the tiny demo catalog."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from feature_store.offline import materialized_as_of, read_materialized
from recsys.cli import app


def test_materialize_writes_every_view_and_show_prints_values(tiny_demo_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    events = pl.read_parquet(tiny_demo_dir / "interactions.parquet")
    as_of = int(events["ts"].quantile(0.5))  # type: ignore[arg-type]
    out = tmp_path / "features"
    result = runner.invoke(
        app,
        ["features", "materialize", "--data", str(tiny_demo_dir), "--as-of", str(as_of), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    frames = read_materialized(out)
    assert {"item", "user", "user_item", "user_category", "history", "covisit_table"} <= frames.keys()
    assert materialized_as_of(out) == as_of
    assert frames["history"]["ts"].max() < as_of  # type: ignore[operator]

    user, item = events.row(0)[:2]
    result = runner.invoke(
        app,
        [
            "features",
            "show",
            "--data",
            str(tiny_demo_dir),
            "--user",
            user,
            "--item",
            item,
            "--as-of",
            str(as_of),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ui_seen" in result.output and "user_events_all" in result.output and "item_trend" in result.output
    result = runner.invoke(app, ["features", "show", "--data", str(tiny_demo_dir), "--user", user])
    assert result.exit_code == 0, result.output
    assert "user_events_all" in result.output and "ui_seen" not in result.output
    result = runner.invoke(app, ["features", "show", "--data", str(tmp_path / "missing"), "--user", user])
    assert result.exit_code != 0
