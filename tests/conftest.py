"""Suite-wide settings: offline models, math libraries pinned to the available cores, tiny data, and a
real throwaway redis-server (store tests and the Celery broker)."""

from __future__ import annotations

import os

_cores = str(len(os.sched_getaffinity(0)))
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, _cores)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402
import pytest  # noqa: E402
from servers import redis_server  # noqa: E402

from recsys.data.demo import DemoSpec, generate_demo  # noqa: E402

TINY_DEMO = DemoSpec(users=200, items=300, events=6000, topics=12, days=90, seed=3)


@pytest.fixture(scope="session")
def tiny_demo() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items, interactions) of a tiny seeded demo catalog, shared read-only by tests."""
    return generate_demo(TINY_DEMO)


@pytest.fixture
def tiny_demo_dir(tmp_path: Path, tiny_demo: tuple[pl.DataFrame, pl.DataFrame]) -> Path:
    items, interactions = tiny_demo
    folder = tmp_path / "demo"
    folder.mkdir()
    items.write_parquet(folder / "items.parquet")
    interactions.write_parquet(folder / "interactions.parquet")
    return folder


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One redis-server for the session (see :func:`redis_server`)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
