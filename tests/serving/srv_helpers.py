"""Shared by the serving tests: the tiny run's coordinates, app settings and real uvicorn servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl

from recsys.artifacts import RunStore, atomic_write_json
from recsys.batch import recommend_users
from recsys.config import Config
from serving.settings import ServingSettings

CONFIG = Path(__file__).parents[1] / "dags" / "tiny_config.yaml"
RUN_ID = "run-serving"
TOKEN = "test-token-0123456789"


# encoder weights are written once (temp file, rename) and never in place: copies may share them
SHARED_WEIGHTS = frozenset({".safetensors", ".onnx"})


@dataclass(frozen=True)
class TinyRun:
    runs_dir: Path
    config_path: Path
    run_id: str


def copy_tree(source: Path, target: Path) -> None:
    """Copy a runs folder or a run, hard-linking the encoder weights (~290 MB a copy otherwise).

    Everything else is copied, so a test may still rewrite a ranker model or a store in place.
    """

    def copy(src: str, dst: str) -> None:
        if Path(src).suffix in SHARED_WEIGHTS:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=copy)


def clone_run(runs_dir: Path, run_id: str, new_id: str) -> Path:
    """The run ``run_id`` copied under ``new_id`` (its manifest says so): a new run, unpromoted."""
    store = RunStore(runs_dir)
    copy_tree(store.run_dir(run_id), store.run_dir(new_id))
    atomic_write_json(store.run_dir(new_id) / "manifest.json", {**store.manifest(new_id), "run_id": new_id})
    return store.run_dir(new_id)


def settings_for(run: TinyRun, token: str | None = TOKEN, **limits: object) -> ServingSettings:
    return ServingSettings(
        runs_dir=run.runs_dir,
        config=run.config_path,
        api_token=token,
        sync_interval_s=0,
        **limits,  # type: ignore[arg-type]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]


def start_server(
    run: TinyRun, workers: int = 1, env: dict[str, str] | None = None, log: Path | None = None
) -> LiveServer:
    """uvicorn over ``run`` with ``env`` added; with ``log``, its log (access log on) goes to that file."""
    port = free_port()
    environ = {
        **os.environ,
        "RECSYS_RUNS_DIR": str(run.runs_dir),
        "RECSYS_CONFIG": str(run.config_path),
        "RECSYS_API_TOKEN": TOKEN,
        "RECSYS_SYNC_INTERVAL_S": "0.5",
        "POLARS_MAX_THREADS": "1",
        **(env or {}),
    }
    command = [sys.executable, "-m", "uvicorn", "serving.app:app_from_env", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += ["--log-level", "info"] if log is not None else ["--no-access-log"]
    if log is None:
        process = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:  # uvicorn writes its access log to stdout, the rest to stderr
        with open(log, "ab") as output:
            process = subprocess.Popen(command, env=environ, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stderr.read().decode() if process.stderr else (log.read_text() if log else "")
            raise RuntimeError(f"uvicorn exited: {output}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return LiveServer(url, process)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("uvicorn did not become ready within 120 s")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def batch_answer(config: Config, run: TinyRun, user: str) -> pl.DataFrame:
    """What ``recsys.batch.recommend_users`` answers for ``user`` (k=10) from the run, as of the run's
    now: the moment serving answers for (the batch job may place users at their latest event)."""
    batch, _ = recommend_users(config, [user], 10, runs=run.runs_dir, as_of="now")
    return batch
