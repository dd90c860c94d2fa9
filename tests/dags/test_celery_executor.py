"""The nightly DAG, unchanged, under the CeleryExecutor: a real Redis broker, scheduler, DAG processor,
execution API server and two Celery workers on this machine, two shards for the mapped stages.

Every Airflow process runs with its own AIRFLOW_HOME (SQLite metadata DB) in a temp folder. The DAG
takes its settings from the environment, as a deployment's workers would (`RECSYS_CONFIG`,
`RECSYS_PIPELINE__*`, `RECSYS_SCALE__SHARDS`), and the scheduler starts its run on its own: the DAG
is created unpaused and its latest interval is due.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from test_recsys_nightly import DAG_ID, TINY_CONFIG, airflow_env

from recsys.artifacts import STAGING, RunStore
from recsys.assemble import load_recommender
from recsys.batch import batch_moments
from recsys.data.demo import DemoSpec, write_demo

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RUN_TIMEOUT_S = 900
"""The whole run: Airflow's start-up and the tiny pipeline (no fine-tuning) on 2 cores."""
DEMO = DemoSpec(users=60, items=80, events=1500, topics=4, seed=11)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dag_runs(database: Path) -> list[tuple[str, str]]:
    """(run id, state) of the DAG's runs, read straight from the metadata DB (an airflow CLI call
    would cost seconds of CPU per poll)."""
    if not database.exists():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        try:
            return list(db.execute("select run_id, state from dag_run where dag_id = ?", (DAG_ID,)))
        except sqlite3.OperationalError:  # the table does not exist yet
            return []


def _task_states(database: Path) -> dict[str, list[tuple[int, str]]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute("select task_id, map_index, state from task_instance where dag_id = ?", (DAG_ID,))
        states: dict[str, list[tuple[int, str]]] = {}
        for task_id, map_index, state in rows:
            states.setdefault(task_id, []).append((map_index, state))
    return {task_id: sorted(values) for task_id, values in states.items()}


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def test_nightly_dag_under_celery_two_workers_two_shards(tmp_path: Path, redis_url: str) -> None:
    data, runs, home = tmp_path / "data", tmp_path / "runs", tmp_path / "airflow"
    write_demo(data, DEMO)
    home.mkdir()
    api_port = _free_port()
    env = airflow_env(home) | {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        # the suite's redis-server (its database 0 holds the store tests' keys): broker 2, results 3
        "AIRFLOW__CELERY__BROKER_URL": redis_url.rsplit("/", 1)[0] + "/2",
        "AIRFLOW__CELERY__RESULT_BACKEND": redis_url.rsplit("/", 1)[0] + "/3",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "recsys-celery-test-secret",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # The DAG unchanged; the deployment's settings come from the environment.
        "RECSYS_CONFIG": str(TINY_CONFIG),
        "RECSYS_PIPELINE__DATA_DIR": str(data),
        "RECSYS_PIPELINE__RUNS_DIR": str(runs),
        "RECSYS_SCALE__SHARDS": "2",
        # Keep the run small: the base encoder as it is, encoded with torch (no fine-tuning, no export).
        "RECSYS_ENCODER__FINE_TUNE": "false",
        "RECSYS_EMBEDDINGS__BACKEND": "torch",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run(
        [airflow, "db", "migrate"], env=env, cwd=home, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

    commands = {
        "api-server": ["api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(api_port)],
        "dag-processor": ["dag-processor"],
        "scheduler": ["scheduler"],
        "worker-1": ["celery", "worker", "--celery-hostname", "recsys-w1@%h", "--skip-serve-logs"],
        "worker-2": ["celery", "worker", "--celery-hostname", "recsys-w2@%h", "--skip-serve-logs"],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: home / f"{name}.log" for name in commands}
    database = home / "airflow.db"
    try:
        for name, args in commands.items():
            with logs[name].open("wb") as log:
                processes[name] = subprocess.Popen(
                    [airflow, *args], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT
                )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        finished: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            finished = [run for run in _dag_runs(database) if run[1] in ("success", "failed")]
            dead = [name for name, process in processes.items() if process.poll() is not None]
            if finished or dead:
                break
            time.sleep(5)
        diagnostics = "\n".join(f"--- {name}\n{_tail(path)}" for name, path in logs.items())
        assert not dead, f"{dead} exited early\n{diagnostics}"
        assert finished, f"no finished run after {RUN_TIMEOUT_S}s: {_dag_runs(database)}\n{diagnostics}"
        tasks = _task_states(database)
        assert [state for _, state in finished] == ["success"], f"{tasks}\n{diagnostics}"
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # Each sharded stage ran as two mapped task instances, then its combine task.
    assert tasks["embed_shard"] == [(0, "success"), (1, "success")], tasks
    assert tasks["recommend_shard"] == [(0, "success"), (1, "success")], tasks
    assert {state for values in tasks.values() for _, state in values} == {"success"}, tasks

    store = RunStore(runs)
    run_id = store.current()
    assert run_id is not None and store.manifest(run_id)["status"] == "promoted"
    assert store.manifest(run_id)["config"]["scale"]["shards"] == 2
    assert list((runs / STAGING).iterdir()) == []  # parts combined and dropped, the run published
    recs = pl.read_parquet(runs / run_id / "recommendations" / "recommendations.parquet")
    events = pl.read_parquet(data / "interactions.parquet")
    assert recs["user_id"].n_unique() == events["user_id"].n_unique()
    # shards of the users by moment, then id, concatenated in order
    run_events = pl.read_parquet(runs / run_id / "data" / "interactions.parquet")
    ordered = batch_moments(load_recommender(runs / run_id), run_events).ordered(run_events)
    assert recs["user_id"].unique(maintain_order=True).to_list() == ordered
