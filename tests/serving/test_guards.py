"""Guards of the HTTP API (in process, over the tiny real run): tokens for reads that reveal history,
the answer cache bounded in bytes, the batch budget, the text-query rate limit, a locked store, and
logs without user ids."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator

import anyio
import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient
from srv_helpers import TOKEN, TinyRun, settings_for

from serving.app import create_app, redact_path
from serving.dependencies import ServingError, WorkPool
from serving.state import ResultCache

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ = "read-token-0123456789"
METRICS = "metrics-token-0123456789"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _known_user(run: TinyRun) -> str:
    events = pl.read_parquet(run.runs_dir / run.run_id / "data" / "interactions.parquet")
    return str(events["user_id"].sort()[0])


@pytest.fixture
def guarded(runs_copy: TinyRun) -> Iterator[TestClient]:
    settings = settings_for(runs_copy, read_token=READ, metrics_token=METRICS)
    with TestClient(create_app(settings)) as client:
        yield client


def test_read_token_guards_every_v1_route(guarded: TestClient, runs_copy: TinyRun) -> None:
    user = _known_user(runs_copy)
    reads = [
        ("get", f"/v1/users/{user}/recommendations", None),
        ("get", "/v1/items/i1/similar", None),
        ("post", "/v1/recommendations/batch", {"user_ids": [user]}),
    ]
    for method, path, payload in reads:
        missing = guarded.request(method, path, json=payload)
        assert missing.status_code == 401, missing.text
        assert missing.json()["error"] == "unauthorized"
        assert "RECSYS_READ_TOKEN" in missing.json()["message"]
        assert missing.json()["fields"][0]["field"] == "Authorization"
        wrong = guarded.request(method, path, json=payload, headers=_bearer("nope"))
        assert wrong.status_code == 401 and "wrong" in wrong.json()["message"]
        for token in (READ, TOKEN):  # the admin token grants every route
            assert guarded.request(method, path, json=payload, headers=_bearer(token)).status_code == 200
    event = {"user_id": user, "item_id": "i1", "ts": 2_000_000_000}
    assert guarded.post("/v1/events", json=event, headers=_bearer(READ)).status_code == 401  # a write
    assert guarded.get("/healthz").status_code == 200 and guarded.get("/readyz").status_code == 200


def test_metrics_can_have_their_own_token(guarded: TestClient) -> None:
    refused = guarded.get("/metrics")
    assert refused.status_code == 401 and "RECSYS_METRICS_TOKEN" in refused.json()["message"]
    assert guarded.get("/metrics", headers=_bearer(READ)).status_code == 401
    for token in (METRICS, TOKEN):
        answer = guarded.get("/metrics", headers=_bearer(token))
        assert answer.status_code == 200 and "recsys_http_requests_total" in answer.text


@pytest.mark.parametrize(
    ("params", "field"), [({"explain": True}, "explain"), ({"exclude_seen": False}, "exclude_seen")]
)
def test_reads_revealing_history_need_the_admin_token(
    guarded: TestClient, runs_copy: TinyRun, params: dict[str, object], field: str
) -> None:
    path = f"/v1/users/{_known_user(runs_copy)}/recommendations"
    with_read = guarded.get(path, params=params, headers=_bearer(READ))
    assert with_read.status_code == 403, with_read.text
    body = with_read.json()
    assert body["error"] == "forbidden" and "RECSYS_API_TOKEN" in body["message"]
    assert body["fields"][0]["field"] == field
    assert guarded.get(path, params=params).status_code == 401
    assert guarded.get(path, params=params, headers=AUTH).status_code == 200


def test_history_needs_the_admin_token_without_a_read_token(runs_copy: TinyRun) -> None:
    user = _known_user(runs_copy)
    path = f"/v1/users/{user}/recommendations"
    with TestClient(create_app(settings_for(runs_copy))) as client:
        assert client.get(path).status_code == 200  # plain reads stay open
        for params, field in (({"explain": True}, "explain"), ({"exclude_seen": False}, "exclude_seen")):
            refused = client.get(path, params=params)
            assert refused.status_code == 401 and refused.json()["fields"][0]["field"] == field
        batch = client.post("/v1/recommendations/batch", json={"user_ids": [user], "exclude_seen": False})
        assert batch.status_code == 401 and batch.json()["fields"][0] == {
            "field": "exclude_seen",
            "location": "body",
            "message": batch.json()["message"],
        }
        explained = client.get(path, params={"explain": True, "k": 2}, headers=AUTH).json()
        assert explained["items"][0]["explanation"]["features"]
    with TestClient(create_app(settings_for(runs_copy, token=None))) as no_admin:
        refused = no_admin.get(path, params={"explain": True})
        assert refused.status_code == 403 and "set RECSYS_API_TOKEN" in refused.json()["message"]


def test_unknown_users_share_one_bounded_cache_entry(runs_copy: TinyRun) -> None:
    with TestClient(create_app(settings_for(runs_copy))) as client:
        first = client.get("/v1/users/stranger-0/recommendations", params={"k": 200}).json()
        for n in range(1, 2000):
            answer = client.get(f"/v1/users/stranger-{n}/recommendations", params={"k": 200})
            assert answer.status_code == 200
        last = answer.json()
        assert last["user_id"] == "stranger-1999" and last["fallback"]
        assert last["items"] == first["items"]
        cache: ResultCache = client.app.state.holder.current.cache  # type: ignore[attr-defined]
        assert len(cache) == 1
        assert cache.nbytes < 64_000  # one k=200 answer
        metrics = client.get("/metrics").text
        assert "recsys_answer_cache_entries 1.0" in metrics
        assert f"recsys_answer_cache_bytes {float(cache.nbytes)}" in metrics


def test_answer_cache_is_bounded_in_bytes(runs_copy: TinyRun) -> None:
    events = pl.read_parquet(runs_copy.runs_dir / runs_copy.run_id / "data" / "interactions.parquet")
    users = events["user_id"].unique().sort().to_list()[:40]
    with TestClient(create_app(settings_for(runs_copy, cache_bytes=40_000))) as client:
        cache: ResultCache = client.app.state.holder.current.cache  # type: ignore[attr-defined]
        for user in users:
            assert client.get(f"/v1/users/{user}/recommendations", params={"k": 50}).status_code == 200
            assert cache.nbytes <= 40_000
        assert 0 < len(cache) < len(users)  # the oldest answers were dropped to stay in bytes
        kept = client.get(f"/v1/users/{users[-1]}/recommendations", params={"k": 50})
        assert kept.json()["user_id"] == users[-1]
    small = ResultCache(size=10, max_bytes=1_000)
    small.put(("too", "big"), b"x" * 2_000)
    assert len(small) == 0 and small.nbytes == 0


def test_batch_budget_is_users_times_k(runs_copy: TinyRun) -> None:
    users = [f"someone-{n}" for n in range(5)]
    with TestClient(create_app(settings_for(runs_copy, max_batch_items=100))) as client:
        over = client.post("/v1/recommendations/batch", json={"user_ids": users, "k": 30})
        assert over.status_code == 422, over.text
        body = over.json()
        assert {f["field"] for f in body["fields"]} == {"user_ids", "k"}
        assert "RECSYS_MAX_BATCH_ITEMS" in body["message"] and "150" in body["message"]
        within = client.post("/v1/recommendations/batch", json={"user_ids": users, "k": 20})
        assert within.status_code == 200 and len(within.json()["results"]) == 5


def test_text_queries_are_rate_limited_per_client(runs_copy: TinyRun) -> None:
    settings = settings_for(runs_copy, query_burst=3, query_rate_per_s=0.01)
    with TestClient(create_app(settings)) as client:
        path = "/v1/users/newcomer/recommendations"
        for _ in range(3):
            assert client.get(path, params={"q": "the sea", "k": 3}).status_code == 200
        limited = client.get(path, params={"q": "the sea", "k": 3})
        assert limited.status_code == 429, limited.text
        assert limited.json()["fields"][0]["field"] == "q"
        assert int(limited.headers["Retry-After"]) >= 1
        assert client.get(path, params={"k": 3}).status_code == 200  # no text: no encoder, no limit


@pytest.mark.parametrize(
    "failure", [redis.ConnectionError("gone"), sqlite3.OperationalError("database is locked")]
)
def test_a_store_that_cannot_answer_gives_503(failure: Exception) -> None:
    def work() -> None:
        raise failure

    with pytest.raises(ServingError) as raised:
        anyio.run(WorkPool(threads=1, timeout_s=5).run, work)
    assert raised.value.status == 503 and raised.value.code == "store_unavailable"


def test_a_store_locked_by_a_writer_answers_503_quickly(runs_copy: TinyRun) -> None:
    """Another process (the nightly push) holds the store's write lock; an event posted meanwhile waits
    for it inside the store, and reads of this worker queue behind that: they answer 503 fast."""
    user = _known_user(runs_copy)
    path = f"/v1/users/{user}/recommendations"
    settings = settings_for(runs_copy, work_timeout_s=0.5, work_threads=1, cache_size=0)
    with TestClient(create_app(settings)) as client:
        pool: WorkPool = client.app.state.work  # type: ignore[attr-defined]
        first = client.get(path)
        assert first.status_code == 200
        event = {"user_id": user, "item_id": "i1", "ts": first.json()["as_of"] + 10}
        writer = sqlite3.connect(runs_copy.runs_dir / "online_store.sqlite", isolation_level=None)
        posted: list[int] = []
        poster = threading.Thread(
            target=lambda: posted.append(client.post("/v1/events", json=event, headers=AUTH).status_code)
        )
        try:
            writer.execute("BEGIN IMMEDIATE")
            poster.start()
            answers: list[tuple[int, float]] = []
            while not any(status == 503 for status, _ in answers) and len(answers) < 20:
                started = time.monotonic()
                status = client.get(path).status_code
                answers.append((status, time.monotonic() - started))
                assert client.get("/healthz").status_code == 200
            busy = client.get(path)
            assert busy.status_code == 503, answers
            assert busy.json()["error"] == "busy" and busy.headers["Retry-After"] == "1"
            assert all(waited < 10 for _, waited in answers), answers  # the store's busy timeout is 30 s
            for _ in range(3 * pool.max_abandoned):  # threads stuck on the store are capped, not one each
                assert client.get(path).status_code == 503
            assert 0 < pool.abandoned <= pool.max_abandoned
        finally:
            writer.rollback()
            writer.close()
            poster.join()
        assert posted == [200]
        for _ in range(600):  # the abandoned threads finish once the lock is released
            if pool.abandoned == 0:
                break
            time.sleep(0.1)
        assert pool.abandoned == 0
        assert client.get(path).status_code == 200  # answers again


def test_logs_never_name_the_user(runs_copy: TinyRun, caplog: pytest.LogCaptureFixture) -> None:
    user = "privacy-probe-4711"
    caplog.set_level(logging.DEBUG)
    settings = settings_for(runs_copy)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        event = {"user_id": user, "item_id": "i1", "ts": 2_000_000_000}
        assert client.post("/v1/events", json=event, headers=AUTH).status_code == 200
        assert client.get(f"/v1/users/{user}/recommendations").status_code == 200
        explain = {"explain": True, "exclude_seen": False}
        explained = client.get(f"/v1/users/{user}/recommendations", params=explain, headers=AUTH)
        assert explained.status_code == 200
        assert client.get(f"/v1/users/{user}/recommendations", params={"k": "x"}).status_code == 422
        assert client.get(f"/v1/users/{user}/recommendations", params={"q": user}).status_code == 200
        client.app.state.holder.current.store.close()  # type: ignore[attr-defined]  # any failure deep down
        failed = client.get(f"/v1/users/{user}/recommendations")
        assert failed.status_code == 500 and failed.json()["error"] == "internal_error"
    client_side = ("httpx", "httpcore")  # the test's own HTTP client logs the URLs it asks for
    loud = [
        record
        for record in caplog.records
        if record.levelno >= logging.INFO and not record.name.startswith(client_side)
    ]
    assert any("/v1/users/{user_id}/recommendations" in record.getMessage() for record in loud)
    for record in loud:
        assert user not in record.getMessage(), record.getMessage()


def test_access_log_paths_keep_their_shape_only() -> None:
    assert redact_path("/v1/users/alice@x/recommendations?k=10&q=jazz+alice") == (
        "/v1/users/{user_id}/recommendations?k=…&q=…"
    )
    assert redact_path("/v1/items/i9/similar") == "/v1/items/{item_id}/similar"
    assert redact_path("/healthz") == "/healthz"
    assert redact_path("/v1/whatever/alice") == "/v1/{…}/{…}"
