"""Experiments recorded beside the registry: start, stop, one at a time, runs that exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.artifacts import RunStore, atomic_write_json
from recsys.cli import app
from recsys.experiments import Arm, ExperimentError, ExperimentStore, parse_arm


def make_runs(root: Path, *run_ids: str, config: dict[str, object] | None = None) -> RunStore:
    store = RunStore(root)
    for run_id in run_ids:
        atomic_write_json(store.run_dir(run_id) / "manifest.json", {"run_id": run_id, "config": config or {}})
    return store


def test_start_stop_and_list(tmp_path: Path) -> None:
    runs = make_runs(tmp_path, "run-a", "run-b")
    store = ExperimentStore(tmp_path)
    assert store.active() is None and store.experiments() == []
    arms = [parse_arm("control=run-a:50"), parse_arm("treatment=run-b:50")]
    started = store.start("exp-1", arms, window_s=600, click_events=["click", "add_to_cart"])
    assert store.active() == started and store.get("exp-1") == started
    assert json.loads((tmp_path / "experiments.json").read_text())["experiments"][0]["window_s"] == 600
    with pytest.raises(ExperimentError, match="is running"):
        store.start("exp-2", arms)
    stopped = store.stop("exp-1")
    assert stopped.status == "stopped" and stopped.stopped_at and store.active() is None
    assert store.stop("exp-1") == stopped  # stopping twice is harmless
    with pytest.raises(ExperimentError, match="never reused"):
        store.start("exp-1", arms)
    runs.promote("run-a")
    second = store.start("exp-2", [Arm("control", "@current", 1), Arm("treatment", "run-b", 1)])
    assert store.resolve(second.arms[0]) == "run-a"
    assert [e.name for e in store.experiments()] == ["exp-1", "exp-2"]


def test_missing_runs_and_unknown_names_are_refused(tmp_path: Path) -> None:
    make_runs(tmp_path, "run-a")
    store = ExperimentStore(tmp_path)
    with pytest.raises(ExperimentError, match="arm treatment: run run-x not found"):
        store.start("exp", [parse_arm("control=run-a:50"), parse_arm("treatment=run-x:50")])
    with pytest.raises(ExperimentError, match="none is promoted"):
        store.start("exp", [parse_arm("control=@current:50"), parse_arm("treatment=run-a:50")])
    with pytest.raises(ExperimentError, match="no experiment named"):
        store.stop("nope")
    assert store.experiments() == []


def test_arms_must_share_the_promoted_runs_feature_definitions(tmp_path: Path) -> None:
    runs = make_runs(tmp_path, "run-a", "run-b")
    make_runs(tmp_path, "run-windows", config={"features": {"windows_days": [1, 3]}})
    runs.promote("run-a")
    store = ExperimentStore(tmp_path)
    with pytest.raises(ExperimentError, match="arm treatment: run run-windows has feature definitions"):
        store.start("exp", [parse_arm("control=run-b:50"), parse_arm("treatment=run-windows:50")])
    assert store.start("exp", [parse_arm("control=run-b:50"), parse_arm("treatment=@current:50")])


def _prune(root: Path, keep: int) -> str:
    result = CliRunner().invoke(app, ["runs", "prune", "--keep", str(keep), "--runs", str(root)])
    assert result.exit_code == 0, result.output
    return result.output


def test_retention_keeps_the_runs_a_running_experiment_serves(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    for day in (1, 2, 3, 4):
        run_id = f"run-{day}"
        manifest = {"run_id": run_id, "config": {}, "created_at": f"2026-01-0{day}T02:00:00Z"}
        atomic_write_json(runs.run_dir(run_id) / "manifest.json", manifest)
    runs.promote("run-4")
    store = ExperimentStore(tmp_path)
    arms = [parse_arm("control=@current:50"), parse_arm("treatment=run-1:50")]
    store.start("old-arm", arms)
    assert store.running_runs() == {"run-1"}  # @current is the promoted run: kept anyway

    assert runs.prune(keep=2, also_keep=store.running_runs) == ["run-2"]
    assert "removed 1 runs: run-3" in _prune(tmp_path, keep=1)  # the CLI passes the experiment's runs
    assert runs.exists("run-1")

    store.stop("old-arm")
    assert store.running_runs() == set()
    assert "removed 1 runs: run-1" in _prune(tmp_path, keep=1)
    assert [run["run_id"] for run in runs.list_runs()] == ["run-4"]
