"""One tiny real run per test session, private copies of its runs folder, and real uvicorn servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from srv_helpers import CONFIG, RUN_ID, LiveServer, TinyRun, copy_tree, start_server, stop_server

from recsys.config import load_config
from recsys.data.demo import DemoSpec, write_demo
from recsys.pipeline import run_pipeline
from recsys.run_context import RunContext

SPEC = DemoSpec(users=120, items=160, events=4000, topics=8, days=60, seed=11)
QUICK = {
    "encoder": {"max_steps": 8, "refresh_steps": 4, "max_pairs": 200},
    "evaluation": {"baselines": ["popular"]},
    # these tests are about the model's path (history-based scores, explanations): never a fallback source
    "ranking": {"fallback": False},
    # co-visitation weights 1/steps summed in no fixed order break ties at the per-item top-k cut
    # differently from call to call in the offline features; with one step they are whole counts
    "features": {"covisit_max_gap": 1},
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """A whole pipeline run (promoted) on a tiny demo catalog; never written to by tests."""
    root = tmp_path_factory.mktemp("serving")
    write_demo(root / "data", SPEC)
    config = load_config(CONFIG, environ={}, overrides=QUICK)
    ctx = RunContext.create(config, root / "data", root / "pristine", RUN_ID)
    run_pipeline(ctx)
    return TinyRun(root / "pristine", CONFIG, RUN_ID)


@pytest.fixture
def runs_copy(tiny_run: TinyRun, tmp_path: Path) -> TinyRun:
    """A private copy of the runs folder (its own online store): tests that write don't meet."""
    target = tmp_path / "runs"
    copy_tree(tiny_run.runs_dir, target)
    return TinyRun(target, tiny_run.config_path, tiny_run.run_id)


@pytest.fixture
def live_server(runs_copy: TinyRun) -> Iterator[Callable[..., LiveServer]]:
    """Start real uvicorn processes on free loopback ports over ``runs_copy``; all stopped afterwards."""
    started: list[LiveServer] = []

    def start(workers: int = 1, env: dict[str, str] | None = None, log: Path | None = None) -> LiveServer:
        server = start_server(runs_copy, workers, env, log)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_server(server)
