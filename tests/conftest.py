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

import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402
import pytest  # noqa: E402

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


REDIS_SERVER = "/usr/bin/redis-server"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port, no persistence, killed after the session."""
    if not Path(REDIS_SERVER).exists() and shutil.which("redis-server") is None:
        pytest.skip(f"redis-server binary not found at {REDIS_SERVER} or on PATH")
    binary = REDIS_SERVER if Path(REDIS_SERVER).exists() else str(shutil.which("redis-server"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.kill()
        process.wait()
