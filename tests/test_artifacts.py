"""RunStore: atomic writes, staging, publish, promotion, rollback, and the ``recsys runs`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recsys.artifacts import (
    CURRENT,
    STAGING,
    RunError,
    RunStore,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    run_id_for,
)
from recsys.cli import app


def _stage_and_publish(store: RunStore, run_id: str, ndcg: float = 0.3, payload: str = "model") -> Path:
    with store.stage_output(run_id, "ranker") as out:
        (out / "model.txt").write_text(payload)
    return store.publish(run_id, {"status": "candidate", "metrics": {"recsys": {"ndcg@10": ndcg}}})


def _visible(root: Path) -> list[str]:
    """Every path under ``root`` relative to it, temp files included."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def _run_killed(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that kills itself with SIGKILL where the code says so."""
    prelude = "import os, signal\nfrom pathlib import Path\nfrom recsys.artifacts import *\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


# -- atomic files -------------------------------------------------------------------------------


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "registry.json"
    atomic_write_json(target, {"history": [1]})
    atomic_write_json(target, {"history": [1, 2]})
    assert json.loads(target.read_text()) == {"history": [1, 2]}
    assert _visible(tmp_path) == ["registry.json"]


def test_failed_atomic_write_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    atomic_write_text(target, "run-a\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("run-")
        raise RuntimeError("disk full")
    assert target.read_text() == "run-a\n"
    assert _visible(tmp_path) == ["CURRENT"]


def test_process_killed_mid_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    atomic_write_text(target, "run-a\n")
    result = _run_killed(
        f"""
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("run-b")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert result.returncode == -9, result.stderr
    assert target.read_text() == "run-a\n"


# -- stages and publishing ------------------------------------------------------------------------


def test_exception_inside_stage_output_leaves_no_stage(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), store.stage_output("run-1", "encoder") as out:
        (out / "weights.safetensors").write_bytes(b"half")
        raise RuntimeError("boom")
    assert store.stage_done("run-1", "encoder") is None
    assert list(store.staging_dir("run-1").iterdir()) == []
    assert store.list_runs() == []


def test_killed_stage_is_invisible_and_rerun_completes(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    result = _run_killed(
        f"""
        store = RunStore({str(tmp_path)!r})
        with store.stage_output("run-1", "data") as out:
            (out / "items.parquet").write_text("complete")
        with store.stage_output("run-1", "ranker") as out:
            (out / "model.txt").write_text("half a mod")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert result.returncode == -9, result.stderr
    assert store.stage_done("run-1", "data") is not None
    assert store.stage_done("run-1", "ranker") is None  # the killed stage's temp folder does not count
    assert store.list_runs() == [] and not store.exists("run-1")

    run_dir = _stage_and_publish(store, "run-1", payload="whole model")
    assert (run_dir / "ranker" / "model.txt").read_text() == "whole model"
    assert (run_dir / "data" / "items.parquet").read_text() == "complete"
    assert sorted(path.name for path in run_dir.iterdir()) == ["data", "manifest.json", "ranker"]
    assert [run["run_id"] for run in store.list_runs()] == ["run-1"]


def test_publish_moves_run_into_place_with_its_id(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_dir = _stage_and_publish(store, "run-1")
    assert run_dir == tmp_path / "run-1"
    assert store.manifest("run-1")["run_id"] == "run-1"
    assert not store.staging_dir("run-1").exists()
    with pytest.raises(RunError, match="nothing staged"):
        store.publish("run-2", {})


def test_republishing_a_run_id_replaces_it_without_duplicates(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _stage_and_publish(store, "run-1", payload="first")
    _stage_and_publish(store, "run-1", payload="second")
    assert [run["run_id"] for run in store.list_runs()] == ["run-1"]
    assert (tmp_path / "run-1" / "ranker" / "model.txt").read_text() == "second"
    assert sorted(path.name for path in tmp_path.iterdir()) == [STAGING, "run-1"]
    assert list((tmp_path / STAGING).iterdir()) == []


def test_run_id_is_stable_per_logical_date() -> None:
    date = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert run_id_for(date) == run_id_for(date) == "run-20260301T020000Z"
    assert run_id_for(date.astimezone(timezone(timedelta(hours=2)))) == "run-20260301T020000Z"
    assert run_id_for(date + timedelta(days=1)) == "run-20260302T020000Z"
    assert sorted([run_id_for(date + timedelta(days=1)), run_id_for(date)])[0] == run_id_for(date)


# -- promotion and rollback -------------------------------------------------------------------------


def test_promote_names_the_current_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.current() is None
    for run_id in ("run-1", "run-2"):
        _stage_and_publish(store, run_id)
        store.promote(run_id, reason="test")
    assert store.current() == "run-2"
    assert (tmp_path / CURRENT).read_text() == "run-2\n"
    assert store.manifest("run-2")["status"] == "promoted"
    assert [run["current"] for run in store.list_runs()] == [False, True]
    with pytest.raises(RunError, match="not found"):
        store.promote("run-9")


def test_rollback_needs_an_earlier_promoted_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _stage_and_publish(store, "run-1")
    store.promote("run-1")
    with pytest.raises(RunError, match="nothing to roll back to"):
        store.rollback()


def test_second_rollback_goes_further_back(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for run_id in ("run-1", "run-2", "run-3"):
        _stage_and_publish(store, run_id)
        store.promote(run_id)
    assert store.rollback() == "run-2"
    assert store.rollback() == "run-1"
    assert store.manifest("run-3")["status"] == store.manifest("run-2")["status"] == "rolled_back"
    with pytest.raises(RunError, match="nothing to roll back to"):
        store.rollback()


def _invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_cli_rollback_makes_the_previous_run_current(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for run_id in ("run-20260101T020000Z", "run-20260102T020000Z"):
        _stage_and_publish(store, run_id)
        _invoke("runs", "promote", run_id, "--runs", str(tmp_path))
    assert store.current() == "run-20260102T020000Z"

    result = _invoke("runs", "rollback", "--runs", str(tmp_path))
    assert "current run: run-20260101T020000Z" in result.output
    assert store.current() == "run-20260101T020000Z"
    assert (tmp_path / CURRENT).read_text() == "run-20260101T020000Z\n"
    assert store.manifest("run-20260102T020000Z")["status"] == "rolled_back"
    shown = json.loads(_invoke("runs", "show", "run-20260101T020000Z", "--runs", str(tmp_path)).output)
    assert shown["status"] == "promoted"
    listed = _invoke("runs", "list", "--runs", str(tmp_path)).output
    assert "rolled_back" in listed and "(current)" in listed


def test_cli_rollback_without_history_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["runs", "rollback", "--runs", str(tmp_path)])
    assert result.exit_code == 1
    assert "nothing to roll back to" in result.output
