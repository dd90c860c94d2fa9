"""The nightly DAG as Airflow sees it: DagBag integrity, and one whole run with ``dag.test()``.

Airflow runs in subprocesses with their own AIRFLOW_HOME (config, SQLite metadata DB, logs
in a temp folder), so neither its configuration nor its database leak into the test process.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from recsys import pipeline
from recsys.artifacts import STAGING, RunStore
from recsys.config import load_config
from recsys.data.demo import DemoSpec, write_demo

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
TINY_CONFIG = Path(__file__).with_name("tiny_config.yaml")
DAG_ID = "recsys_nightly"
HEAVY_MODULES = ("recsys.pipeline", "torch", "sentence_transformers", "faiss", "lightgbm")

INTEGRITY = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
dag = bag.dags[{dag_id!r}]
print("RESULT " + json.dumps({{
    "import_errors": {{str(path): str(error) for path, error in bag.import_errors.items()}},
    "dag_ids": sorted(bag.dags),
    "heavy_imports": [name for name in {heavy!r} if name in sys.modules],
    "schedule": str(dag.schedule),
    "catchup": dag.catchup,
    "max_active_runs": dag.max_active_runs,
    "tags": sorted(dag.tags),
    "doc_md": dag.doc_md,
    "params": dag.params.dump(),
    "tasks": {{
        task.task_id: {{
            "retries": task.retries,
            "backoff": task.retry_exponential_backoff,
            "upstream": sorted(task.upstream_task_ids),
            "mapped": bool(getattr(task, "is_mapped", False)),
        }}
        for task in dag.tasks
    }},
}}))
"""

DAG_TEST = """
import itertools
import json
from datetime import UTC, datetime
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={dags!r}).dags[{dag_id!r}]
run = dag.test(logical_date=datetime(2026, 1, 2, 2, 0, tzinfo=UTC), run_conf={conf!r})
print("RESULT " + json.dumps({{
    "state": str(run.state),
    "tasks": {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}},
}}))
"""


def airflow_env(home: Path) -> dict[str, str]:
    """This process's environment without Airflow or recsys settings, plus a private Airflow home."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AIRFLOW", "RECSYS_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        RECSYS_HOME=str(ROOT),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run_in_airflow(code: str, home: Path, timeout: int) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter under ``home``; it prints one ``RESULT <json>`` line."""
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=airflow_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (
        f"rc={result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
    parsed: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return parsed


@pytest.fixture(scope="module")
def parsed_dag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    code = INTEGRITY.format(dags=str(DAGS), dag_id=DAG_ID, heavy=HEAVY_MODULES)
    return run_in_airflow(code, tmp_path_factory.mktemp("airflow"), timeout=300)


def test_dagbag_imports_without_errors(parsed_dag: dict[str, Any]) -> None:
    assert parsed_dag["import_errors"] == {}
    assert parsed_dag["dag_ids"] == [DAG_ID]


def test_parsing_stays_light(parsed_dag: dict[str, Any]) -> None:
    assert parsed_dag["heavy_imports"] == []


def test_schedule_and_run_policy(parsed_dag: dict[str, Any]) -> None:
    assert parsed_dag["schedule"] == load_config(environ={}).pipeline.schedule
    assert parsed_dag["catchup"] is False
    assert parsed_dag["max_active_runs"] == 1
    assert {"recsys", "training"} <= set(parsed_dag["tags"])
    assert "Idempotent" in parsed_dag["doc_md"]
    assert parsed_dag["params"] == {"config": None, "data_dir": None, "runs_dir": None, "force": False}


def test_every_task_retries_with_exponential_backoff(parsed_dag: dict[str, Any]) -> None:
    for task_id, task in parsed_dag["tasks"].items():
        assert task["retries"] >= 2, task_id
        assert task["backoff"] > 1, task_id


def _pipeline_stage_names() -> list[str]:
    """Names of ``recsys.pipeline``'s module-level stage functions, in ``PIPELINE`` order."""
    names = {id(value): name for name, value in vars(pipeline).items() if callable(value)}
    return [names[id(stage)] for stage in pipeline.PIPELINE]


def test_one_task_per_pipeline_stage_in_order(parsed_dag: dict[str, Any]) -> None:
    tasks = parsed_dag["tasks"]
    order = ["prepare", *_pipeline_stage_names(), "publish", "push_online"]
    shard_tasks = {"embeddings": "embed_shard", "recommendations": "recommend_shard"}
    assert sorted(tasks) == sorted([*order, "prune", "shard_ids", *shard_tasks.values()])
    for upstream, task_id in itertools.pairwise(order):
        # a sharded stage combines the parts of its mapped shard task, which runs after the same upstream
        shard_task = shard_tasks.get(task_id)
        expected = sorted([upstream, shard_task]) if shard_task else [upstream]
        assert tasks[task_id]["upstream"] == expected, task_id
        if shard_task:
            assert tasks[shard_task]["upstream"] == sorted([upstream, "shard_ids"])
            assert tasks[shard_task]["mapped"]
    assert tasks["prepare"]["upstream"] == []
    assert tasks["shard_ids"]["upstream"] == ["prepare"]
    assert not any(task["mapped"] for name, task in tasks.items() if name not in shard_tasks.values())
    # Retention after the push, and also when the push was skipped (trigger rule none_failed).
    assert tasks["prune"]["upstream"] == ["publish", "push_online"]


@pytest.mark.slow
@pytest.mark.integration
def test_whole_dag_run_publishes_promotes_and_pushes_online(tmp_path: Path) -> None:
    data, runs, home = tmp_path / "data", tmp_path / "runs", tmp_path / "airflow"
    write_demo(data, DemoSpec(users=120, items=150, events=3000, seed=11))
    home.mkdir()
    airflow = Path(sys.executable).with_name("airflow")
    migrate = subprocess.run(
        [str(airflow), "db", "migrate"], env=airflow_env(home), capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

    conf = {"config": str(TINY_CONFIG), "data_dir": str(data), "runs_dir": str(runs)}
    code = DAG_TEST.format(dags=str(DAGS), dag_id=DAG_ID, conf=conf)
    result = run_in_airflow(code, home, timeout=1500)
    assert result["state"] == "success", result
    assert set(result["tasks"].values()) == {"success"}, result["tasks"]

    run_id = "run-20260102T020000Z"  # keyed by the data interval: the same date gives the same run
    store = RunStore(runs)
    assert store.current() == run_id
    manifest = store.manifest(run_id)
    assert manifest["status"] == "promoted"
    assert [run["run_id"] for run in store.list_runs()] == [run_id]
    assert list((runs / STAGING).iterdir()) == []
    assert set(manifest["timings_s"]) == set(pipeline.STAGES)  # timings travel between tasks via XCom

    recs = pl.read_parquet(runs / run_id / "recommendations" / "recommendations.parquet")
    assert recs.columns == ["user_id", "item_id", "rank", "score"]
    assert recs["user_id"].n_unique() > 100

    from feature_store.online import get_user_history, open_online_store

    config = load_config(TINY_CONFIG, environ={})
    with open_online_store(config.features, runs) as online:
        assert online.read_meta()["run_id"] == run_id
        user = recs["user_id"][0]
        assert get_user_history(online, user), f"no history for {user} in the online store"
