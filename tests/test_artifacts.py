"""RunStore: atomic writes, staging, publish, promotion, rollback, and the ``recsys runs`` commands."""

from __future__ import annotations

import json
import os
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
    LOCKS,
    REGISTRY,
    STAGING,
    InvalidRunIdError,
    RunBusyError,
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
    assert sorted(path.name for path in tmp_path.iterdir()) == [LOCKS, STAGING, "run-1"]
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


# -- run ids ------------------------------------------------------------------------------------------

UNSAFE_RUN_IDS = [
    "../x",
    "../../x",
    "/tmp/elsewhere",
    "a/b",
    "a\\b",
    "..",
    ".",
    "",
    ".staging",
    "quarantine",
    "registry.json",
    "run..1",
    "run\x00",
    "run\n",
    "run\x1b[2J",
    " run",
    "x" * 129,
]


@pytest.mark.parametrize("run_id", UNSAFE_RUN_IDS)
def test_unsafe_run_ids_are_refused_by_every_store_method(tmp_path: Path, run_id: str) -> None:
    store = RunStore(tmp_path / "runs")
    _stage_and_publish(store, "run-1")
    calls = [
        lambda: store.run_dir(run_id),
        lambda: store.staging_dir(run_id),
        lambda: store.quarantine_dir(run_id),
        lambda: store.manifest(run_id),
        lambda: store.promote(run_id),
        lambda: store.publish(run_id, {}),
        lambda: store.stage_done(run_id, "data"),
        lambda: store.run_lock(run_id).__enter__(),
    ]
    for call in calls:
        with pytest.raises(InvalidRunIdError, match="invalid run id"):
            call()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]  # nothing written outside


@pytest.mark.parametrize("run_id", ["run-20260301T020000Z", "run-test-2", "run_1.2", "A", "x" * 128])
def test_safe_run_ids_are_accepted(tmp_path: Path, run_id: str) -> None:
    assert RunStore(tmp_path).run_dir(run_id) == tmp_path / run_id


def test_registry_naming_an_unsafe_run_is_refused_on_reload(tmp_path: Path) -> None:
    """Serving resolves the promoted run through ``current_dir``: a tampered registry cannot point outside."""
    store = RunStore(tmp_path / "runs")
    outside = tmp_path / "elsewhere"
    _stage_and_publish(RunStore(tmp_path), "elsewhere")
    for run_id in (str(outside), "../elsewhere"):
        atomic_write_json(store.root / REGISTRY, {"history": [{"run_id": run_id, "reason": "tampered"}]})
        with pytest.raises(InvalidRunIdError):
            store.current_dir()


@pytest.mark.parametrize("run_id", ["../../x", "/tmp/abs-run"])
def test_cli_refuses_unsafe_run_ids(tmp_path: Path, run_id: str) -> None:
    runs = tmp_path / "runs"
    _stage_and_publish(RunStore(runs), "run-1")
    for args in (["promote", run_id], ["show", run_id]):
        result = CliRunner().invoke(app, ["runs", *args, "--runs", str(runs)])
        assert result.exit_code == 1, result.output
        assert "invalid run id" in result.output
    assert not (runs / REGISTRY).exists()


def test_corrupt_registry_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / REGISTRY).write_text("{not json")
    with pytest.raises(RunError, match=r"registry\.json: not a valid registry"):
        RunStore(tmp_path).current()
    result = CliRunner().invoke(app, ["runs", "list", "--runs", str(tmp_path)])
    assert result.exit_code == 1 and "not a valid registry" in " ".join(result.output.split())


# -- durability ---------------------------------------------------------------------------------------


def _record_syscalls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Log fsync (by path) and rename calls in order; the real calls still run."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_atomic_write_flushes_file_then_renames_then_flushes_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / REGISTRY
    events = _record_syscalls(monkeypatch)
    atomic_write_json(target, {"history": []})
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    tmp = events[0][1]
    assert Path(tmp).parent == tmp_path and tmp != str(target)
    assert events[1][1] == f"{tmp} -> {target}"
    assert events[2][1] == str(tmp_path)


def test_stage_and_publish_flush_files_before_and_folders_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    events = _record_syscalls(monkeypatch)
    run_dir = _stage_and_publish(store, "run-1")
    renames = [i for i, (kind, what) in enumerate(events) if kind == "replace" and "/.ranker." in what]
    assert len(renames) == 1
    before, after = events[: renames[0]], events[renames[0] + 1 :]
    assert any(kind == "fsync" and what.endswith("/model.txt") for kind, what in before)
    assert ("fsync", str(store.staging_dir("run-1"))) in after
    publish = events.index(("replace", f"{store.staging_dir('run-1')} -> {run_dir}"))
    assert ("fsync", str(tmp_path)) in events[publish + 1 :]
    events.clear()
    store.promote("run-1")
    for name in (REGISTRY, CURRENT):
        rename = next(
            i
            for i, (kind, what) in enumerate(events)
            if kind == "replace" and what.endswith(f"-> {tmp_path / name}")
        )
        assert events[rename - 1][0] == "fsync" and events[rename + 1] == ("fsync", str(tmp_path))


# -- locks, resumable publish, promotion history -----------------------------------------------------


def test_second_writer_of_a_run_id_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.run_lock("run-1"):
        busy = pytest.raises(RunBusyError, match="run run-1 is being written by another process")
        with busy, RunStore(tmp_path).run_lock("run-1"):
            pass
        with store.run_lock("run-2"):  # other run ids are independent
            pass
    with store.run_lock("run-1"):  # released on exit
        pass


def test_registry_lock_is_reentrant_across_store_objects(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _stage_and_publish(store, "run-1")
    with store.registry_lock():  # a caller may hold it around gate, publish and promote
        RunStore(tmp_path).promote("run-1")
    assert store.current() == "run-1"


def test_publish_killed_after_the_move_completes_on_retry(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_dir = _stage_and_publish(store, "run-1")  # moved into place; the promote never happened
    manifest = store.manifest("run-1")
    assert store.publish("run-1", {"status": "candidate", "retry": True}) == run_dir
    assert store.manifest("run-1") == manifest  # the run in place is the one that was published
    store.promote("run-1", reason="retry")
    assert store.current() == "run-1" and (tmp_path / CURRENT).read_text() == "run-1\n"


def test_promoting_the_current_run_again_adds_no_entry(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _stage_and_publish(store, "run-1")
    store.promote("run-1")
    store.promote("run-1")
    history = json.loads((tmp_path / REGISTRY).read_text())["history"]
    assert [entry["run_id"] for entry in history] == ["run-1"]


def test_current_file_is_repaired_from_the_registry(tmp_path: Path) -> None:
    """A promote killed between the registry and CURRENT is repaired by the next registry change."""
    store = RunStore(tmp_path)
    for run_id in ("run-1", "run-2"):
        _stage_and_publish(store, run_id)
    store.promote("run-1")
    atomic_write_json(tmp_path / REGISTRY, {"history": [{"run_id": "run-1"}, {"run_id": "run-2"}]})
    assert (tmp_path / CURRENT).read_text() == "run-1\n"
    store.promote("run-2")
    assert (tmp_path / CURRENT).read_text() == "run-2\n"


# -- retention ----------------------------------------------------------------------------------------


def _six_runs(store: RunStore) -> None:
    """run-1..run-6 created in that order; run-2 then run-4 promoted (run-2 is the rollback target)."""
    for number in range(1, 7):
        run_id = f"run-{number}"
        _stage_and_publish(store, run_id)
        store.update_manifest(run_id, created_at=f"2026-01-0{number}T02:00:00Z")
        store.quarantine_dir(run_id).mkdir(parents=True)
    store.promote("run-2")
    store.promote("run-4")


def test_prune_keeps_newest_current_and_rollback_target(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _six_runs(store)
    assert store.prune(keep=2) == ["run-1", "run-3"]
    assert [run["run_id"] for run in store.list_runs()] == ["run-2", "run-4", "run-5", "run-6"]
    assert sorted(path.name for path in (tmp_path / "quarantine").iterdir()) == [
        "run-2",
        "run-4",
        "run-5",
        "run-6",
    ]
    assert list((tmp_path / STAGING).iterdir()) == []  # trash emptied
    assert store.current() == "run-4" and store.rollback() == "run-2"

    # run-2 is current and nothing is left to roll back to (run-4 was rolled back): only run-2 stays
    assert store.prune(keep=0) == ["run-4", "run-5", "run-6"]
    assert [run["run_id"] for run in store.list_runs()] == ["run-2"]


def test_prune_skips_a_run_being_written(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _six_runs(store)
    with store.run_lock("run-1"):
        assert store.prune(keep=0) == ["run-3", "run-5", "run-6"]
    assert store.exists("run-1")
    with pytest.raises(ValueError, match="keep must be >= 0"):
        store.prune(keep=-1)


def test_cli_prune(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _six_runs(store)
    result = _invoke("runs", "prune", "--keep", "3", "--runs", str(tmp_path))
    assert "removed 2 runs: run-1, run-3" in result.output
    assert "nothing to remove" in _invoke("runs", "prune", "--keep", "3", "--runs", str(tmp_path)).output
