"""Experiments recorded beside the registry: start, stop, one at a time, runs that exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.artifacts import RunStore, atomic_write_json
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
