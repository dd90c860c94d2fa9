"""The real pipeline on a tiny demo: a stage killed mid-write, resume, re-runs, the quality gate, rollback.

One module fixture runs the pipeline in a subprocess, SIGKILLs it while the encoder stage is
writing, then resumes in-process to a published run; the tests below build on that run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from recsys.artifacts import CURRENT, STAGING, RunStore, run_id_for
from recsys.cli import app
from recsys.config import Config, load_config
from recsys.data.demo import DemoSpec, write_demo
from recsys.pipeline import STAGES, run_pipeline
from recsys.promotion import publish
from recsys.run_context import RunContext

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY_CONFIG = Path(__file__).parent / "dags" / "tiny_config.yaml"
NIGHT = datetime(2026, 1, 3, 2, 0, tzinfo=UTC)


@dataclass
class Resumed:
    config: Config
    data: Path
    runs: Path
    run_id: str
    done_before_kill: list[str]
    leftovers_after_kill: list[str]
    visible_runs_after_kill: list[str]
    resumed_timings: dict[str, float]


def _kill_during(stage: str, config_path: Path, data: Path, runs: Path, run_id: str) -> None:
    """Run the pipeline in a subprocess and SIGKILL it once ``stage`` has started writing its output."""
    code = f"""
        from pathlib import Path
        from recsys.config import load_config
        from recsys.pipeline import run_pipeline
        from recsys.run_context import RunContext
        config = load_config({str(config_path)!r}, environ={{}})
        run_pipeline(RunContext.create(config, Path({str(data)!r}), Path({str(runs)!r}), {run_id!r}))
    """
    log = runs.parent / "killed-run.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], stdout=sink, stderr=sink, start_new_session=True
        )
    staging = runs / STAGING / run_id
    deadline = time.monotonic() + 600
    while not list(staging.glob(f".{stage}.*")):
        assert process.poll() is None, f"pipeline ended before {stage} started:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{stage} never started"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the whole session this test started: no orphaned workers
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Resumed:
    root = tmp_path_factory.mktemp("pipeline")
    data, runs = root / "data", root / "runs"
    write_demo(data, DemoSpec(users=120, items=150, events=3000, seed=11))
    config = load_config(TINY_CONFIG, environ={})
    run_id = run_id_for(NIGHT)
    _kill_during("encoder", TINY_CONFIG, data, runs, run_id)

    store = RunStore(runs)
    done = sorted(stage for stage in STAGES if store.stage_done(run_id, stage) is not None)
    leftovers = sorted(path.name for path in store.staging_dir(run_id).glob(".*"))
    visible = [run["run_id"] for run in store.list_runs()]

    ctx = RunContext(config, store, run_id, data)
    run_pipeline(ctx)
    return Resumed(config, data, runs, run_id, done, leftovers, visible, dict(ctx.timings))


def test_killed_stage_leaves_no_visible_run_and_resume_skips_finished_stages(resumed: Resumed) -> None:
    assert resumed.done_before_kill == ["data", "features", "split"]
    assert [name.split(".")[1] for name in resumed.leftovers_after_kill] == ["encoder"]  # only a temp folder
    assert resumed.visible_runs_after_kill == []
    # the resumed run computed the killed stage and those after it, and skipped the finished ones
    assert list(resumed.resumed_timings) == list(STAGES[3:])


def test_resumed_run_is_published_whole_and_promoted(resumed: Resumed) -> None:
    store = RunStore(resumed.runs)
    run_dir = store.run_dir(resumed.run_id)
    assert store.current() == resumed.run_id
    assert store.manifest(resumed.run_id)["status"] == "promoted"
    assert sorted(path.name for path in run_dir.iterdir()) == sorted([*STAGES, "manifest.json"])
    assert not any(path.name.startswith(".") for path in run_dir.rglob("*"))  # no temp folder was published
    assert list((resumed.runs / STAGING).iterdir()) == []


def _copy_as_new_run(resumed: Resumed, run_id: str, ndcg_factor: float) -> RunContext:
    """Stage a new run from the published one's stage outputs, with its NDCG@10 scaled (a known verdict)."""
    store = RunStore(resumed.runs)
    for stage in STAGES:
        shutil.copytree(store.run_dir(resumed.run_id) / stage, store.staging_dir(run_id) / stage)
    report_path = store.staging_dir(run_id) / "evaluation" / "report.json"
    report = json.loads(report_path.read_text())
    report["results"]["recsys"]["all"]["ndcg@10"] *= ndcg_factor
    report_path.write_text(json.dumps(report))
    return RunContext(resumed.config, store, run_id, resumed.data)


def test_regressing_run_is_rejected_and_current_run_stays(resumed: Resumed) -> None:
    store = RunStore(resumed.runs)
    worse = run_id_for(NIGHT + timedelta(days=1))
    run_dir, promoted, reason = publish(_copy_as_new_run(resumed, worse, ndcg_factor=0.5))

    assert not promoted and "NDCG@10" in reason
    assert run_dir == store.run_dir(worse)
    manifest = store.manifest(worse)
    assert manifest["status"] == "rejected"
    assert manifest["rejected_reason"] == reason
    assert manifest["parent_run"] == resumed.run_id
    assert store.current() == resumed.run_id
    assert (resumed.runs / CURRENT).read_text() == f"{resumed.run_id}\n"


def test_regressing_rerun_of_the_promoted_date_keeps_serving_run(resumed: Resumed) -> None:
    store = RunStore(resumed.runs)
    served = store.run_dir(resumed.run_id)
    model_before = (served / "ranker" / "model.txt").read_bytes()
    manifest_before = store.manifest(resumed.run_id)
    staged, promoted, reason = publish(_copy_as_new_run(resumed, resumed.run_id, ndcg_factor=0.5))
    try:
        assert not promoted and reason.startswith("re-run of the promoted run")
        assert staged == store.staging_dir(resumed.run_id)
        assert json.loads((staged / "manifest.json").read_text())["status"] == "rejected"
        assert store.current() == resumed.run_id
        assert store.manifest(resumed.run_id) == manifest_before
        assert (served / "ranker" / "model.txt").read_bytes() == model_before
    finally:
        shutil.rmtree(store.staging_dir(resumed.run_id))


def test_better_run_is_promoted_and_cli_rollback_restores_previous(resumed: Resumed) -> None:
    store = RunStore(resumed.runs)
    before = store.current()
    better = run_id_for(NIGHT + timedelta(days=2))
    _, promoted, _ = publish(_copy_as_new_run(resumed, better, ndcg_factor=1.5))
    assert promoted and store.current() == better

    result = CliRunner().invoke(app, ["runs", "rollback", "--runs", str(resumed.runs)])
    assert result.exit_code == 0, result.output
    assert store.current() == before
    assert store.manifest(better)["status"] == "rolled_back"


def test_rerunning_the_same_date_rewrites_the_same_run(resumed: Resumed) -> None:
    store = RunStore(resumed.runs)
    root_before = sorted(path.name for path in resumed.runs.iterdir())
    runs_before = [run["run_id"] for run in store.list_runs()]
    recommendations = Path("recommendations") / "recommendations.parquet"
    shipped_before = pl.read_parquet(store.run_dir(resumed.run_id) / recommendations)
    encoders_before = json.loads((store.run_dir(resumed.run_id) / "encoder" / "result.json").read_text())

    ctx = RunContext(resumed.config, store, run_id_for(NIGHT), resumed.data)
    run_dir, _, _ = run_pipeline(ctx)

    assert ctx.run_id == resumed.run_id and run_dir == store.run_dir(resumed.run_id)
    assert list(ctx.timings) == list(STAGES)  # nothing staged any more: every stage ran again
    assert [run["run_id"] for run in store.list_runs()] == runs_before
    assert sorted(path.name for path in resumed.runs.iterdir()) == root_before  # no second copy
    assert sorted(path.name for path in run_dir.iterdir()) == sorted([*STAGES, "manifest.json"])
    assert list((resumed.runs / STAGING).iterdir()) == []
    # Every stage ran again, the encoder's fine-tuning and refresh included (budgets in steps, not
    # seconds): the same data and config ship the same recommendations.
    assert_frame_equal(pl.read_parquet(run_dir / recommendations), shipped_before)
    encoders = json.loads((run_dir / "encoder" / "result.json").read_text())
    for name in ("evaluated", "shipped"):
        assert encoders[name]["weights_sha256"] == encoders_before[name]["weights_sha256"], name


def test_a_night_with_new_data_compares_both_models_on_its_window(resumed: Resumed, tmp_path: Path) -> None:
    """New data shifts the test window: the promoted run is re-scored on the new split for the gate."""
    store = RunStore(resumed.runs)
    served = store.current()
    assert served is not None
    data = tmp_path / "data"
    write_demo(data, DemoSpec(users=130, items=170, events=3400, seed=12))  # other items, other window
    run_dir, promoted, reason = run_pipeline(
        RunContext(resumed.config, store, run_id_for(NIGHT + timedelta(days=5)), data)
    )
    metrics = json.loads((run_dir / "manifest.json").read_text())["metrics"]
    rescored = metrics[f"promoted:{served}"]["ndcg@10"]
    assert 0.0 <= rescored <= 1.0
    assert "the promoted run re-scored on this run's split" in reason
    assert f"promoted {served} {rescored:.4f}" in reason
    assert promoted == (
        metrics["recsys"]["ndcg@10"] >= rescored * (1 - resumed.config.pipeline.gate_tolerance)
    )


def _mentions(path: Path, user: str) -> bool:
    """Whether a file under the runs folder holds ``user``: any string cell of a Parquet file, or the
    id as a whole word of a text file (u1 is not found in u12)."""
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
        return any(frame[c].cast(pl.String).eq(user).any() for c, t in frame.schema.items() if t == pl.String)
    if path.suffix in {".json", ".txt", ".csv", ".jsonl", ".yaml", ".md", ".log"}:
        return (
            re.search(rf"(?<![\w-]){re.escape(user)}(?![\w-])", path.read_text(errors="replace")) is not None
        )
    return False


def test_a_forgotten_user_is_gone_after_the_next_run_and_live_events_train_it(resumed: Resumed) -> None:
    """Forget → rerun: the id is nowhere under the runs folder nor in the store; an event posted to the
    online store after the run's data is part of the next run's input."""
    from feature_store.online import apply_events, open_online_store
    from recsys.online_publish import publish_to_online
    from recsys.privacy import export_user, forget_users

    store = RunStore(resumed.runs)
    served = store.current_dir()
    events = pl.read_parquet(served / "data" / "interactions.parquet")
    items = pl.read_parquet(served / "data" / "items.parquet")
    gone, active = sorted(events["user_id"].unique().to_list())[:2]
    publish_to_online(served, resumed.config)
    posted_at = int(events["ts"].max()) + 60  # type: ignore[arg-type]
    live = pl.DataFrame(
        {"user_id": [active, gone], "item_id": [items["item_id"][0]] * 2, "ts": [posted_at] * 2}
    )
    with open_online_store(resumed.config.features, resumed.runs) as online:
        apply_events(online, live, items, resumed.config.features)
    assert any(_mentions(path, gone) for path in resumed.runs.rglob("*") if path.is_file())

    forget_users(resumed.config, resumed.runs, [gone])
    new_run = run_id_for(NIGHT + timedelta(days=9))
    run_dir, _, _ = run_pipeline(RunContext(resumed.config, store, new_run, resumed.data))

    leftovers = [path for path in resumed.runs.rglob("*") if path.is_file() and _mentions(path, gone)]
    assert leftovers == []
    held = export_user(resumed.config, resumed.runs, gone)
    assert held["forgotten"] and not held["history"] and not held["recommendations"]
    assert not any(held["online_store"].values()), held["online_store"]
    trained_on = pl.read_parquet(run_dir / "data" / "interactions.parquet")
    assert trained_on.filter((pl.col("user_id") == active) & (pl.col("ts") == posted_at)).height == 1
    assert store.manifest(new_run)["data"]["live_events"] == 1


KILL_AT = """
import os, signal
from pathlib import Path
from recsys.config import load_config
from recsys.pipeline import run_pipeline
from recsys.run_context import RunContext

real_replace = os.replace


def replace(src, dst, *args, **kwargs):
    # SIGKILL at the rename that would make {target!r} visible: a stage's output in staging, or the
    # whole run moving into place (publish). All of its work is done, none of it published.
    dst = Path(dst)
    if dst.name == {target!r} and dst.parent.name in ({run_id!r}, {runs_name!r}):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)


os.replace = replace
config = load_config({config!r}, environ={{}})
run_pipeline(RunContext.create(config, Path({data!r}), Path({runs!r}), {run_id!r}))
"""


def test_killed_at_every_stage_and_in_publish_the_served_run_stays_and_a_rerun_completes(
    resumed: Resumed,
) -> None:
    store = RunStore(resumed.runs)
    served = store.current()
    assert served is not None
    registry = (resumed.runs / "registry.json").read_text()
    model = (store.run_dir(served) / "ranker" / "model.txt").read_bytes()
    run_id = run_id_for(NIGHT + timedelta(days=30))
    for target in [*STAGES, run_id]:  # the run id: killed as publish moves the run into place
        code = KILL_AT.format(
            target=target,
            run_id=run_id,
            runs_name=resumed.runs.name,
            config=str(TINY_CONFIG),
            data=str(resumed.data),
            runs=str(resumed.runs),
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
        assert done.returncode == -signal.SIGKILL, (target, done.stderr[-3000:])
        # Nothing of the killed run is visible or promoted; what serves is untouched.
        assert store.current() == served and (resumed.runs / CURRENT).read_text() == f"{served}\n"
        assert (resumed.runs / "registry.json").read_text() == registry
        assert not store.run_dir(run_id).exists()
        assert (store.run_dir(served) / "ranker" / "model.txt").read_bytes() == model
        if target in STAGES:
            assert store.stage_done(run_id, target) is None  # only a temporary folder, never half a stage
    run_dir, _, _ = run_pipeline(RunContext(resumed.config, store, run_id, resumed.data))
    assert run_dir == store.run_dir(run_id)
    assert sorted(path.name for path in run_dir.iterdir()) == sorted([*STAGES, "manifest.json"])
    assert not any(path.name.startswith(".") for path in run_dir.rglob("*"))
    assert run_id in [run["run_id"] for run in store.list_runs()]
