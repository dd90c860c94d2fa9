"""Concurrent and crashing use of the runs registry: many promotes at once, SIGKILL mid-publish.

These start processes (marked ``integration``). Each checks the invariants serving relies on:
every promote kept in the registry, ``CURRENT`` naming the registry's last entry, and the run
folder whole, whatever moment a process was killed at.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from recsys.artifacts import CURRENT, REGISTRY, STAGING, RunBusyError, RunStore

pytestmark = pytest.mark.integration

WRITERS = 8


def _publish_staged(store: RunStore, run_id: str, payload: str) -> dict[str, Any]:
    with store.stage_output(run_id, "ranker") as out:
        (out / "model.txt").write_text(payload)
    return {"status": "candidate", "payload": payload}


def _history(root: Path) -> list[str]:
    return [entry["run_id"] for entry in json.loads((root / REGISTRY).read_text())["history"]]


def _promote_at_once(root: str, run_id: str, barrier: Any) -> None:
    barrier.wait()
    RunStore(root).promote(run_id, reason="concurrent")


@pytest.mark.parametrize("trial", range(4))
def test_concurrent_promotes_keep_every_entry(tmp_path: Path, trial: int) -> None:
    store = RunStore(tmp_path)
    run_ids = [f"run-{trial}-{number}" for number in range(WRITERS)]
    for run_id in run_ids:
        store.publish(run_id, _publish_staged(store, run_id, run_id))
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WRITERS)
    processes = [
        context.Process(target=_promote_at_once, args=(str(tmp_path), run_id, barrier)) for run_id in run_ids
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * WRITERS
    history = _history(tmp_path)
    assert sorted(history) == sorted(run_ids)  # none lost, none doubled
    assert (tmp_path / CURRENT).read_text() == history[-1] + "\n"
    assert {store.manifest(run_id)["status"] for run_id in run_ids} == {"promoted"}


def test_concurrent_cli_promotes_keep_every_entry(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_ids = [f"run-{number}" for number in range(WRITERS)]
    for run_id in run_ids:
        store.publish(run_id, _publish_staged(store, run_id, run_id))
    command = [sys.executable, "-c", "from recsys.cli import main; main()", "runs", "promote"]
    processes = [
        subprocess.Popen([*command, run_id, "--runs", str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for run_id in run_ids
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * WRITERS, outputs
    history = _history(tmp_path)
    assert sorted(history) == sorted(run_ids)
    assert (tmp_path / CURRENT).read_text() == history[-1] + "\n"


KILLED_PUBLISH = """
import os, signal, sys
from recsys.artifacts import RunStore

kill_at, root, run_id, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
real_replace, renames = os.replace, 0

def replace(src, dst):
    global renames
    renames += 1
    if renames == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

os.replace = replace  # every rename of publish and promote is a point to die at
store = RunStore(root)
store.publish(run_id, {"status": "candidate", "payload": payload})
store.promote(run_id, reason="gate")
"""


def _killed_publish(kill_at: int, root: Path, run_id: str, payload: str) -> int:
    script = textwrap.dedent(KILLED_PUBLISH)
    result = subprocess.run(
        [sys.executable, "-c", script, str(kill_at), str(root), run_id, payload],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, -signal.SIGKILL), result.stderr
    return result.returncode


@pytest.mark.parametrize("republish", [False, True], ids=["new-run", "rerun-of-current"])
def test_publish_killed_at_every_rename_completes_on_retry(tmp_path: Path, republish: bool) -> None:
    run_id = "run-1" if republish else "run-2"
    kills = 0
    for kill_at in range(1, 30):
        root = tmp_path / f"kill-{kill_at}"
        store = RunStore(root)
        store.publish("run-1", _publish_staged(store, "run-1", "old"))
        store.promote("run-1")
        manifest = _publish_staged(store, run_id, "new")
        if _killed_publish(kill_at, root, run_id, "new") == 0:
            break  # past the last rename: nothing left to interrupt
        kills += 1

        store.publish(run_id, manifest)  # the retry (the DAG's publish task, or `recsys run` again)
        store.promote(run_id, reason="gate")

        history = _history(root)
        assert history == (["run-1"] if republish else ["run-1", "run-2"]), kill_at
        assert (root / CURRENT).read_text() == f"{run_id}\n"
        assert (store.run_dir(run_id) / "ranker" / "model.txt").read_text() == "new"
        assert store.manifest(run_id)["status"] == "promoted"
        assert store.manifest(run_id)["run_id"] == run_id
        assert list((root / STAGING).iterdir()) == [], kill_at  # nothing staged, no trash
        assert [run["run_id"] for run in store.list_runs()] == sorted({"run-1", run_id})
        assert sorted(path.name for path in root.iterdir()) == sorted(
            {".locks", STAGING, REGISTRY, CURRENT, "run-1", run_id}
        ), kill_at  # no temp file of a killed write is left behind
        assert sorted(path.name for path in store.run_dir(run_id).iterdir()) == ["manifest.json", "ranker"]
    else:
        pytest.fail("publish never completed")
    # new run: manifest, move, registry, CURRENT, status; a re-run of the current run: manifest,
    # old copy aside, move, status (it is current already: the registry does not change)
    assert kills == (4 if republish else 5)


HOLD_RUN_LOCK = """
import sys, time
from recsys.artifacts import RunStore

with RunStore(sys.argv[1]).run_lock("run-1"):
    print("locked", flush=True)
    time.sleep(300)
"""


def test_run_lock_refuses_a_second_writer_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_RUN_LOCK), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(RunBusyError), RunStore(tmp_path).run_lock("run-1"):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait(timeout=60)
    with RunStore(tmp_path).run_lock("run-1", timeout=60):
        pass
