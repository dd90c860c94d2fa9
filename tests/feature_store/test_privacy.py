"""Forgetting a user: tombstones, the online store, retained runs, and the ``recsys users`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from fs_logs import make_log
from typer.testing import CliRunner

from feature_store.offline import materialize
from feature_store.online import apply_events, open_online_store, push_materialized, user_data
from feature_store.online_store import Exposure, Outcome
from recsys.artifacts import atomic_write_json
from recsys.cli import app
from recsys.config import load_config
from recsys.privacy import (
    TOMBSTONES,
    PrivacyError,
    add_tombstones,
    drop_forgotten,
    export_user,
    forget_users,
    read_tombstones,
)

GONE = "forget-me-4711"
NOTHING = {"events": [], "exposures": [], "outcomes": []}
"""An export of a user the store holds nothing about."""


def test_tombstones_hold_no_user_id_and_drop_the_users_rows(tmp_path: Path) -> None:
    assert add_tombstones(tmp_path, [GONE, "other-0042"]) == 2
    assert add_tombstones(tmp_path, [GONE]) == 0  # idempotent
    assert GONE.encode() not in (tmp_path / TOMBSTONES).read_bytes()
    stones = read_tombstones(tmp_path)
    assert stones.forgotten(GONE) and not stones.forgotten("kept")
    events = pl.DataFrame({"user_id": [GONE, "kept", "other-0042", "kept"], "item_id": ["a", "b", "c", "d"]})
    assert drop_forgotten(events, tmp_path)["item_id"].to_list() == ["b", "d"]
    assert drop_forgotten(events, tmp_path / "nothing-forgotten-here").height == 4
    (tmp_path / TOMBSTONES).write_text("{not json")
    with pytest.raises(PrivacyError, match=r"tombstones\.json: unreadable"):
        read_tombstones(tmp_path)


def _runs_folder(tmp_path: Path) -> Path:
    """A runs folder with one run's files (data, features, batch recommendations) and a pushed store."""
    catalog, log = make_log(2)
    log = pl.concat([log, log.filter(pl.col("user_id") == "u1").with_columns(user_id=pl.lit(GONE))])
    as_of = int(log["ts"].max()) + 1  # type: ignore[arg-type]
    config = load_config(None, environ={})
    runs = tmp_path / "runs"
    run = runs / "run-a"
    (run / "data").mkdir(parents=True)
    (run / "recommendations").mkdir()
    atomic_write_json(run / "manifest.json", {"run_id": "run-a", "status": "finished"})
    log.write_parquet(run / "data" / "interactions.parquet")
    catalog.write_parquet(run / "data" / "items.parquet")
    recs = pl.DataFrame(
        {"user_id": [GONE, "u0"], "item_id": ["i1", "i2"], "rank": [1, 1], "score": [0.5, 0.9]}
    )
    recs.write_parquet(run / "recommendations" / "recommendations.parquet")
    frames = materialize(log, catalog, as_of, config.features)
    (run / "features").mkdir()
    for name, frame in frames.items():
        frame.write_parquet(run / "features" / f"{name}.parquet")
    with open_online_store(config.features, runs) as store:
        push_materialized(store, frames, as_of, recs)
        events = pl.DataFrame({"user_id": [GONE, "u0"], "item_id": ["i3", "i3"], "ts": [as_of, as_of]})
        apply_events(store, events, catalog, config.features)
        served = [
            Exposure(f"rec-{user}", "exp", "control", "run-a", user, as_of, ("i1",)) for user in (GONE, "u0")
        ]
        store.log_exposures(served)
        store.log_outcomes(
            [
                Outcome(e.recommendation_id, "exp", "control", e.user_id, "i1", "click", as_of, True, "id")
                for e in served
            ]
        )
    return runs


def test_forget_removes_the_user_from_the_store_and_every_run_file(tmp_path: Path) -> None:
    runs = _runs_folder(tmp_path)
    config = load_config(None, environ={})
    held = export_user(config, runs, GONE)
    assert held["online_store"]["history"] and held["online_store"]["events"]
    exposures, outcomes = held["online_store"]["exposures"], held["online_store"]["outcomes"]
    assert [(e["recommendation_id"], e["items"]) for e in exposures] == [(f"rec-{GONE}", ["i1"])]
    assert [(o["user_id"], o["item_id"]) for o in outcomes] == [(GONE, "i1")]
    kept = export_user(config, runs, "u0")

    done = forget_users(config, runs, [GONE])
    assert done.tombstones == 1 and done.store_entries > 0
    assert {path.name for path in done.files} >= {
        "interactions.parquet",
        "recommendations.parquet",
        "user.parquet",
    }
    after = [path for path in runs.rglob("*") if path.is_file() and GONE.encode() in path.read_bytes()]
    assert after == []  # nowhere under the runs folder: not in run files, the store, or the tombstones
    assert export_user(config, runs, GONE)["online_store"] == NOTHING
    assert export_user(config, runs, "u0") == kept  # nobody else is touched
    with open_online_store(config.features, runs) as store:
        assert user_data(store, GONE) == NOTHING


def test_users_commands_forget_and_export(tmp_path: Path) -> None:
    runs = _runs_folder(tmp_path)
    runner = CliRunner()
    exported = runner.invoke(app, ["users", "export", GONE, "--runs", str(runs)])
    assert exported.exit_code == 0, exported.output
    held = json.loads(exported.stdout)["online_store"]
    assert held["user"] and held["exposures"][0]["items"] == ["i1"] and held["outcomes"]
    forgot = runner.invoke(app, ["users", "forget", GONE, "never-seen", "--runs", str(runs)])
    assert forgot.exit_code == 0, forgot.output
    assert "2 new tombstone(s)" in forgot.output
    again = json.loads(runner.invoke(app, ["users", "export", GONE, "--runs", str(runs)]).stdout)
    assert again["forgotten"] and again["online_store"] == NOTHING
