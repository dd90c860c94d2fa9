"""Against real uvicorn processes on loopback: the same answers as batch, writes, a reload under load,
and schemathesis over the OpenAPI schema (no 5xx)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import polars as pl
import pytest
from srv_helpers import TOKEN, LiveServer, TinyRun, batch_answer, clone_run, stop_server

from recsys.artifacts import RunStore
from recsys.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.integration]

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_real_server_answers_like_batch_and_takes_events(
    live_server: Callable[..., LiveServer], runs_copy: TinyRun
) -> None:
    server = live_server()
    events = pl.read_parquet(runs_copy.runs_dir / runs_copy.run_id / "data" / "interactions.parquet")
    user = events["user_id"].sort()[0]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
        online = [item["item_id"] for item in before["items"]]
        batch = batch_answer(load_config(runs_copy.config_path, environ={}), runs_copy, user)
        assert online == batch["item_id"].to_list()

        event = {"user_id": user, "item_id": before["items"][0]["item_id"], "ts": before["as_of"] + 5}
        assert client.post("/v1/events", json=event).status_code == 401
        assert client.post("/v1/events", json=event, headers=AUTH).status_code == 200
        after = client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
        assert event["item_id"] not in [item["item_id"] for item in after["items"]]
        assert [item["score"] for item in after["items"]] != [item["score"] for item in before["items"]]

        bad = client.get(f"/v1/users/{user}/recommendations", params={"k": "lots"})
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "k"


def test_reload_under_load_drops_no_request(
    live_server: Callable[..., LiveServer], runs_copy: TinyRun
) -> None:
    server = live_server(workers=2)
    store = RunStore(runs_copy.runs_dir)
    clone_run(runs_copy.runs_dir, runs_copy.run_id, "run-next")
    users = [f"u{i}" for i in range(1, 40)] + ["someone-new"]
    failures: list[str] = []
    served: set[str] = set()
    stop = threading.Event()

    def hammer(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            n = offset
            while not stop.is_set():
                user = users[n % len(users)]
                n += 1
                try:
                    answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                else:
                    served.add(answer.json()["run_id"])

    threads = [threading.Thread(target=hammer, args=(i * 7,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        store.promote("run-next")
        with httpx.Client(base_url=server.url, timeout=60) as admin:
            reloaded = admin.post("/admin/reload", headers=AUTH)
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["run_id"] == "run-next"
            deadline = time.monotonic() + 30  # the other worker follows the store within its sync interval
            while time.monotonic() < deadline:
                if all(admin.get("/readyz").json()["run_id"] == "run-next" for _ in range(6)):
                    break
                time.sleep(0.3)
            else:
                pytest.fail("not every worker serves the promoted run")
        deadline = time.monotonic() + 30  # a busy machine may take a while to answer the hammering
        while "run-next" not in served and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert served == {runs_copy.run_id, "run-next"}


def test_schemathesis_finds_no_server_error(
    runs_copy: TinyRun, live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """schemathesis (its CLI, as one would run it by hand) over the OpenAPI schema, with the token so
    writes and reload are exercised too: every generated request answers, never with a 5xx."""
    server = live_server()
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json"]
    command += ["--checks", "not_a_server_error", "--header", f"Authorization: Bearer {TOKEN}"]
    command += ["--max-examples", "30", "--seed", "7", "--workers", "1", "--no-color"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.lower(), result.stdout[-4000:]


def test_healthz_stays_fast_while_30_explanations_are_in_flight(
    live_server: Callable[..., LiveServer], runs_copy: TinyRun
) -> None:
    """Ranking and explanations run off the event loop: the loop answers /healthz meanwhile (2 workers).
    The issue's explicit threshold, made robust: the median of 21 probes under 50 ms."""
    server = live_server(workers=2, env={"RECSYS_WORK_TIMEOUT_S": "120"})  # queue, never shed, here
    users = sorted(
        pl.read_parquet(runs_copy.runs_dir / runs_copy.run_id / "data" / "interactions.parquet")["user_id"]
        .unique()
        .to_list()
    )
    statuses: list[int] = []
    started = threading.Semaphore(0)
    stop = threading.Event()

    def explain(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120, headers=AUTH) as client:
            n = offset
            while not stop.is_set():
                started.release()
                params = {"k": 20, "explain": True, "exclude_seen": False}
                answer = client.get(f"/v1/users/{users[n % len(users)]}/recommendations", params=params)
                statuses.append(answer.status_code)
                n += 30

    threads = [threading.Thread(target=explain, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    probes: list[float] = []
    try:
        for _ in range(30):  # every thread has sent its first request
            started.acquire()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(21):
                before = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                probes.append(time.perf_counter() - before)
                time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(statuses) >= 30 and set(statuses) == {200}
    assert statistics.median(probes) < 0.050, sorted(probes)


def test_concurrent_text_queries_give_no_server_error(live_server: Callable[..., LiveServer]) -> None:
    """32 text queries at once (the encoder's tokenizer shared by threads): every answer is 200."""
    env = {"RECSYS_QUERY_BURST": "1000", "RECSYS_WORK_TIMEOUT_S": "120", "RECSYS_WORK_THREADS": "32"}
    server = live_server(env=env)  # as many threads as requests: every one of them encodes at once
    words = ["a story about the sea", "space travel and stars", "cooking with friends", "a quiet village"]
    texts = [" ".join(words[n:] + words[:n]) * 6 for n in range(len(words))]  # long: longer tokenizing
    statuses: list[int] = []
    barrier = threading.Barrier(32)

    def ask(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            barrier.wait()
            params = {"q": f"{texts[n % len(texts)]} {n}", "k": 5}
            statuses.append(client.get(f"/v1/users/new-{n}/recommendations", params=params).status_code)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 32


def test_server_log_names_no_user(live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    """uvicorn at INFO with its access log on: the paths logged keep their shape, not the ids."""
    log = tmp_path / "server.log"
    server = live_server(log=log)
    user = "privacy-probe-9183"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get(f"/v1/users/{user}/recommendations", params={"k": 3}).status_code == 200
        assert client.get(f"/v1/users/{user}/recommendations", params={"q": user}).status_code == 200
        assert client.get(f"/v1/users/{user}/recommendations", params={"k": "x"}).status_code == 422
        assert client.get(f"/v1/items/{user}/similar").status_code == 404
    stop_server(server)
    text = log.read_text()
    assert "/v1/users/{user_id}/recommendations?k=…" in text and "/v1/items/{item_id}/similar" in text
    assert user not in text
