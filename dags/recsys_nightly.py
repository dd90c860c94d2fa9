"""Nightly retraining: the recsys pipeline, one task per stage, then the quality gate and the online push.

Each task calls one `recsys.pipeline` function; the code lives in the package, this file only
wires it. Tasks hand each other a small JSON *run description* through XCom (run id, resolved
config, data and runs folders, stage timings), never data: stages read and write files under
`<runs_dir>/.staging/<run_id>/` and `publish` moves the finished run to `<runs_dir>/<run_id>/`.

* **Idempotent.** The run id comes from the DAG run's data interval (`run_id_for`), so
  re-running a date rewrites the same `runs/<run_id>/`; a retried task skips the stages whose
  output already exists and resumes where the failed attempt stopped (`force` recomputes).
* **Gated.** `publish` promotes the run only when its NDCG@10 is at least the serving run's
  (minus `pipeline.gate_tolerance`); a rejected run stays listed with its reason and the
  serving run stays current. `push_online` then loads the promoted run's batch
  recommendations and materialized features into the online store (skipped when rejected), and
  `prune` keeps the newest `pipeline.keep_runs` runs (retention; never one a running experiment
  serves).
* **Configured** by Params (`config`, `data_dir`, `runs_dir`, `force`) or, when they are empty,
  by the environment: `RECSYS_CONFIG` (YAML path), `RECSYS_PIPELINE__DATA_DIR`,
  `RECSYS_PIPELINE__RUNS_DIR` and any other `RECSYS_<SECTION>__<KEY>` override. Relative
  paths are resolved against `RECSYS_HOME` (default: the project folder holding `dags/`).
  The schedule is the config's `pipeline.schedule`, read when the DAG file is parsed.

Stages run one after another in `recsys.pipeline.PIPELINE` order, as `recsys run` does: the
encoder's fine-tuning is most of the work, and running the cheap stages beside it would only take
CPU from it. Each stage fits the evaluated recipe and the one the run ships (see `recsys.pipeline`).

* **Sharded.** Catalog embedding and batch recommendations are split into `scale.shards` shards
  (items, users) mapped over one task each (`embed_shard`, `recommend_shard`, dynamic task
  mapping); the stage's own task then combines the parts. With the CeleryExecutor the cluster's
  workers share the shards (the runs folder must be on storage every worker sees); with one
  shard the DAG does what `recsys run` does.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from recsys.config import Config, load_config

STAGES = (
    "validate",
    "split",
    "features",
    "encoder",
    "embeddings",
    "index",
    "retrieval",
    "ranker",
    "evaluation",
    "recommendations",
)
"""Task ids, each the name of its `recsys.pipeline` stage function, in pipeline order."""
SHARDED = {"embeddings": "embed_shard", "recommendations": "recommend_shard"}
"""Stage -> the `recsys.pipeline` function of one of its shards (a mapped task of that name)."""

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(os.environ.get("RECSYS_HOME", Path(__file__).resolve().parent.parent))

RunInfo = dict[str, Any]
"""The run description passed between tasks (JSON through XCom)."""


def _resolve(path: str) -> str:
    """Absolute path; relative ones are taken from the project root, not the worker's cwd."""
    return str((PROJECT_ROOT / path).resolve())


def _context(run: RunInfo) -> Any:
    """The pipeline's RunContext for this run (imported here: recsys is heavy to import)."""
    from recsys.artifacts import RunStore
    from recsys.run_context import RunContext

    config = Config.model_validate(run["config"])
    return RunContext(config, RunStore(run["runs_dir"]), run["run_id"], Path(run["data_dir"]))


@task
def prepare() -> RunInfo:
    """Resolve config and folders once for the whole run, and key the run by its data interval."""
    from recsys.artifacts import run_id_for

    context = get_current_context()
    params = context["params"]
    config = load_config(_resolve(params["config"]) if params["config"] else None)
    moment = context.get("data_interval_end") or context.get("logical_date") or context["dag_run"].run_after
    return {
        "run_id": run_id_for(moment),
        "config": config.model_dump(mode="json"),
        "data_dir": _resolve(params["data_dir"] or config.pipeline.data_dir),
        "runs_dir": _resolve(params["runs_dir"] or config.pipeline.runs_dir),
        "force": bool(params["force"]),
        "timings": {},
    }


def _stage_task(name: str) -> Any:
    """A task running one pipeline stage; it passes the run description on with the stage's timing."""

    @task(task_id=name, doc_md=f"Runs `recsys.pipeline.{name}` (skipped when its output exists).")
    def run_stage(run: RunInfo) -> RunInfo:
        from recsys import pipeline
        from recsys.data import DataValidationError
        from recsys.data.readers import DataFileError

        ctx = _context(run)
        try:
            # RunBusyError (another process writes this run) is left to Airflow's retries: a wait
            with ctx.store.run_lock(ctx.run_id):
                output = getattr(pipeline, name)(ctx, force=run["force"])
        except (DataValidationError, DataFileError) as error:  # bad input: retrying cannot help
            raise AirflowFailException(str(error)) from error
        return {**run, "timings": {**run["timings"], **ctx.timings}, "output": str(output)}

    return run_stage


@task
def shard_ids(run: RunInfo) -> list[int]:
    """The shards the sharded stages map over (`scale.shards`)."""
    return list(range(Config.model_validate(run["config"]).scale.shards))


def _shard_task(name: str) -> Any:
    """A mapped task running one shard of a stage; the stage's task then combines the parts."""

    @task(task_id=name, doc_md=f"Runs `recsys.pipeline.{name}` for one shard (skipped when its part exists).")
    def run_shard(run: RunInfo, shard: int) -> None:
        from recsys import pipeline

        # No run lock: the shards of a run are written at once by design, each part atomically.
        getattr(pipeline, name)(_context(run), shard, force=run["force"])

    return run_shard


@task
def publish(run: RunInfo) -> RunInfo:
    """Move the staged run into place and promote it if it passes the quality gate."""
    from recsys.promotion import publish as publish_run

    ctx = _context(run)
    ctx.timings = dict(run["timings"])
    with ctx.store.run_lock(ctx.run_id):
        run_dir, promoted, reason = publish_run(ctx)
    log.info("run %s: %s (%s)", ctx.run_id, "promoted" if promoted else "not promoted", reason)
    return {**run, "run_dir": str(run_dir), "promoted": promoted, "reason": reason}


@task
def push_online(run: RunInfo) -> dict[str, int]:
    """Load the newly promoted run's recommendations and features into the online store."""
    if not run["promoted"]:
        raise AirflowSkipException(f"run {run['run_id']} not promoted ({run['reason']}); online store kept")
    from recsys.online_publish import publish_to_online

    return publish_to_online(Path(run["run_dir"]), Config.model_validate(run["config"]))


@task(trigger_rule="none_failed")
def prune(run: RunInfo) -> list[str]:
    """Retention: delete all but the newest ``pipeline.keep_runs`` runs (never the promoted run, its
    rollback target or a run being written), and expire the online store's stale state and log;
    runs whether or not this night's run was promoted."""
    from recsys.artifacts import RunStore
    from recsys.experiments import ExperimentStore
    from recsys.online_publish import expire_online

    config = Config.model_validate(run["config"])
    store = RunStore(run["runs_dir"])
    removed = store.prune(config.pipeline.keep_runs, also_keep=ExperimentStore(store.root).running_runs)
    dropped = expire_online(store, config)
    log.info("pruned %d old runs; expired %d online-store entries", len(removed), dropped)
    return removed


@dag(
    dag_id="recsys_nightly",
    schedule=load_config().pipeline.schedule,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["recsys", "training"],
    params={
        "config": Param(None, type=["null", "string"], description="YAML config (default: RECSYS_CONFIG)."),
        "data_dir": Param(None, type=["null", "string"], description="Input folder (default: config)."),
        "runs_dir": Param(None, type=["null", "string"], description="Runs folder (default: config)."),
        "force": Param(False, type="boolean", description="Recompute stages that already finished."),
    },
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=4),
    },
)
def recsys_nightly() -> None:
    run: Any = prepare()  # TaskFlow calls take and return XComArgs, resolved to RunInfo at run time
    shards = shard_ids(run)
    for name in STAGES:
        if name in SHARDED:
            parts = _shard_task(SHARDED[name]).partial(run=run).expand(shard=shards)
            run = _stage_task(name)(run)
            parts >> run
        else:
            run = _stage_task(name)(run)
    published: Any = publish(run)
    push_online(published) >> prune(published)


recsys_nightly()
