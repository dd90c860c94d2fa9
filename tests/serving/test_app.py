"""The HTTP API through FastAPI's TestClient, over one tiny real run (real FAISS/LightGBM/SQLite)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from srv_helpers import TOKEN, TinyRun, batch_answer, clone_run, settings_for

from recsys.artifacts import RunStore
from recsys.config import load_config
from serving.app import create_app

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(runs_copy: TinyRun) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(runs_copy, max_batch_users=5))) as test_client:
        yield test_client


def _events(run: TinyRun) -> pl.DataFrame:
    return pl.read_parquet(run.runs_dir / run.run_id / "data" / "interactions.parquet")


def _users_by_activity(run: TinyRun) -> list[str]:
    counts = _events(run).group_by("user_id").len().sort(["len", "user_id"], descending=[True, False])
    return counts["user_id"].to_list()


def test_online_recommendations_equal_batch(client: TestClient, runs_copy: TinyRun) -> None:
    users = _users_by_activity(runs_copy)
    chosen = [users[0], users[len(users) // 2], users[-1], "never-seen-user"]
    config = load_config(runs_copy.config_path, environ={})
    for user in chosen:
        answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        batch = batch_answer(config, runs_copy, user)
        assert body["run_id"] == runs_copy.run_id
        assert [item["item_id"] for item in body["items"]] == batch["item_id"].to_list()
        assert [item["rank"] for item in body["items"]] == list(range(1, batch.height + 1))
        np.testing.assert_allclose([item["score"] for item in body["items"]], batch["score"], rtol=1e-6)
        assert [item["sources"] for item in body["items"]] == batch["sources"].to_list()
        assert body["fallback"] == bool(batch["fallback"][0])
    seen = set(_events(runs_copy).filter(pl.col("user_id") == users[0])["item_id"].to_list())
    top = client.get(f"/v1/users/{users[0]}/recommendations", params={"k": 50}).json()["items"]
    assert seen.isdisjoint(item["item_id"] for item in top)


def test_posting_an_event_changes_the_next_answer(client: TestClient, runs_copy: TinyRun) -> None:
    user = _users_by_activity(runs_copy)[3]
    before = client.get(f"/v1/users/{user}/recommendations", params={"k": 20}).json()
    clicked = before["items"][0]["item_id"]
    event = {"user_id": user, "item_id": clicked, "ts": before["as_of"] + 60, "event": "click"}
    posted = client.post("/v1/events", json=event, headers=AUTH)
    assert posted.status_code == 200, posted.text
    assert posted.json()["accepted"] == 1

    after = client.get(f"/v1/users/{user}/recommendations", params={"k": 20}).json()
    assert clicked not in [item["item_id"] for item in after["items"]]
    assert after["as_of"] == event["ts"] + 1
    scores_before = {item["item_id"]: item["score"] for item in before["items"]}
    moved = [
        item["score"] != scores_before[item["item_id"]]
        for item in after["items"]
        if item["item_id"] in scores_before
    ]
    assert moved and any(moved)
    # explained values show why: the user vector and the user's own counters moved
    explained = client.get(
        f"/v1/users/{user}/recommendations", params={"k": 1, "explain": True}, headers=AUTH
    ).json()
    values = {f["feature"]: f["value"] for f in explained["items"][0]["explanation"]["features"]}
    assert values["user_days_since_last"] == pytest.approx(1 / 86_400)


def test_events_are_seen_by_every_worker(runs_copy: TinyRun) -> None:
    user = "fresh-user"
    with (
        TestClient(create_app(settings_for(runs_copy))) as first,
        TestClient(create_app(settings_for(runs_copy))) as second,
    ):
        cold = second.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
        assert cold["fallback"] and cold["strategy"] == "popular"
        batch = {
            "events": [
                {"user_id": user, "item_id": item["item_id"], "ts": cold["as_of"] + 10 + i}
                for i, item in enumerate(cold["items"][:2])
            ]
        }
        assert first.post("/v1/events", json=batch, headers=AUTH).status_code == 200
        warm = second.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
        assert not warm["fallback"] and warm["strategy"] == "ranked"
        assert {item["item_id"] for item in cold["items"][:2]}.isdisjoint(i["item_id"] for i in warm["items"])


def test_writes_need_the_token(client: TestClient, runs_copy: TinyRun) -> None:
    event = {"user_id": "u1", "item_id": "i1", "ts": 2_000_000_000}
    assert client.post("/v1/events", json=event).status_code == 401
    wrong = client.post("/v1/events", json=event, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": TOKEN}).status_code == 401
    with TestClient(create_app(settings_for(runs_copy, token=None))) as open_client:
        refused = open_client.post("/v1/events", json=event, headers=AUTH)
        assert refused.status_code == 403
        assert "RECSYS_API_TOKEN" in refused.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("get", "/v1/users/u1/recommendations?k=0", None, "k"),
        ("get", "/v1/users/u1/recommendations?k=100000", None, "k"),
        ("get", "/v1/users/u1/recommendations?k=ten", None, "k"),
        ("get", "/v1/users/u1/recommendations?explain=maybe", None, "explain"),
        ("get", "/v1/users/u1/recommendations?filter=jazz", None, "filter"),
        ("get", "/v1/users/u1/recommendations?filter=colour:red", None, "filter"),
        ("get", "/v1/items/i1/similar?k=-1", None, "k"),
        ("post", "/v1/recommendations/batch", {"user_ids": ["a", "b", "c", "d", "e", "f"]}, "user_ids"),
        ("post", "/v1/recommendations/batch", {"user_ids": ["a"], "k": 100000}, "k"),
        ("post", "/v1/events", {"user_id": "u1", "item_id": "i1"}, "ts"),
        ("post", "/v1/recommendations/batch", {"user_ids": ["ok", ""]}, "1"),
        ("post", "/v1/events", {"events": []}, "events"),
    ],
)
def test_bad_parameters_get_422_naming_the_field(
    client: TestClient, method: str, path: str, payload: dict[str, object] | None, field: str
) -> None:
    answer = client.request(method, path, json=payload, headers=AUTH)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_request"
    assert any(f["field"].split(".")[-1] == field for f in body["fields"]), body
    assert field in body["message"]


def test_events_for_unknown_items_are_404_and_stale_ones_409(client: TestClient) -> None:
    unknown = {"events": [{"user_id": "u1", "item_id": "no-such-item", "ts": 2_000_000_000}]}
    answer = client.post("/v1/events", json=unknown, headers=AUTH)
    assert answer.status_code == 404 and answer.json()["fields"][0]["field"] == "events.0.item_id"
    stale = client.post("/v1/events", json={"user_id": "u1", "item_id": "i1", "ts": 1}, headers=AUTH)
    assert stale.status_code == 409 and stale.json()["fields"][0]["field"] == "ts"
    assert "before the last push" in stale.json()["message"]


def test_unknown_item_is_404_and_similar_excludes_the_item(client: TestClient) -> None:
    missing = client.get("/v1/items/no-such-item/similar")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    similar = client.get("/v1/items/i1/similar", params={"k": 7}).json()
    ids = [item["item_id"] for item in similar["items"]]
    assert len(ids) == 7 and "i1" not in ids
    scores = [item["score"] for item in similar["items"]]
    assert scores == sorted(scores, reverse=True)


def test_filter_keeps_only_matching_items(client: TestClient, runs_copy: TinyRun) -> None:
    items = pl.read_parquet(runs_copy.runs_dir / runs_copy.run_id / "data" / "items.parquet")
    category = items["categories"].list.first().drop_nulls().mode()[0]
    in_category = set(items.filter(pl.col("categories").list.contains(category))["item_id"].to_list())
    user = _users_by_activity(runs_copy)[1]
    answer = client.get(
        f"/v1/users/{user}/recommendations", params={"k": 10, "filter": f"category:{category}"}
    )
    assert answer.status_code == 200
    found = [item["item_id"] for item in answer.json()["items"]]
    assert found and set(found) <= in_category
    nothing = client.get(f"/v1/users/{user}/recommendations", params={"filter": "category:no-such-category"})
    assert nothing.status_code == 200 and nothing.json()["items"] == []


def test_explanations_add_up_to_the_score(client: TestClient, runs_copy: TinyRun) -> None:
    user = _users_by_activity(runs_copy)[2]
    body = client.get(
        f"/v1/users/{user}/recommendations", params={"k": 3, "explain": True}, headers=AUTH
    ).json()
    for item in body["items"]:
        explanation = item["explanation"]
        total = explanation["bias"] + sum(f["contribution"] for f in explanation["features"])
        assert total == pytest.approx(item["score"], abs=1e-6)
        names = {f["feature"] for f in explanation["features"]}
        assert {"user_item_cosine", "covisit_score", "cand_popular_rank"} <= names
        magnitudes = [abs(f["contribution"]) for f in explanation["features"]]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_batch_equals_single_requests(client: TestClient, runs_copy: TinyRun) -> None:
    users = [*_users_by_activity(runs_copy)[5:8], "never-seen-user"]
    batch = client.post("/v1/recommendations/batch", json={"user_ids": users, "k": 5})
    assert batch.status_code == 200, batch.text
    for user, result in zip(users, batch.json()["results"], strict=True):
        single = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
        assert result == single


def test_cold_start_text_query_uses_the_runs_encoder(client: TestClient) -> None:
    body = client.get(
        "/v1/users/brand-new/recommendations", params={"k": 5, "q": "a story about the sea"}
    ).json()
    assert body["strategy"] == "text_query" and body["fallback"]
    assert len(body["items"]) == 5
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)


def test_text_query_with_a_filter_nothing_matches_answers_empty(client: TestClient) -> None:
    answer = client.get(
        "/v1/users/brand-new/recommendations",
        params={"k": 5, "q": "a story about the sea", "filter": "category:no-such-category"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == []


def test_health_ready_and_metrics(client: TestClient, runs_copy: TinyRun) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["run_id"] == runs_copy.run_id
    client.get("/v1/users/never-seen-user/recommendations")
    text = client.get("/metrics").text
    assert f'recsys_run_info{{run_id="{runs_copy.run_id}"}} 1.0' in text
    assert (
        'recsys_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="200"}'
        in text
    )
    fallbacks = [line for line in text.splitlines() if line.startswith("recsys_fallbacks_total")]
    assert fallbacks and float(fallbacks[0].split()[-1]) >= 1
    assert "recsys_http_request_duration_seconds_bucket" in text


def test_repeated_request_is_answered_from_the_cache(client: TestClient, runs_copy: TinyRun) -> None:
    user = _users_by_activity(runs_copy)[4]
    first = client.get(f"/v1/users/{user}/recommendations", params={"k": 4}).json()
    second = client.get(f"/v1/users/{user}/recommendations", params={"k": 4}).json()
    other_k = client.get(f"/v1/users/{user}/recommendations", params={"k": 3}).json()
    assert first == second
    # each list keeps its cold items' place at its own tail (one place in a list of 3 or 4 under the
    # cold-share floor), so a k=3 answer is ranked afresh and shares the k=4 answer's first two items
    assert len(other_k["items"]) == 3 and other_k["items"][:2] == first["items"][:2]
    hits = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("recsys_answer_cache_hits")
    ]
    assert hits and float(hits[0].split()[-1]) == 1.0


def test_body_over_the_limit_is_413(runs_copy: TinyRun) -> None:
    with TestClient(create_app(settings_for(runs_copy, max_body_bytes=200))) as small:
        events = {"events": [{"user_id": "u1", "item_id": "i1", "ts": 2_000_000_000}] * 10}
        answer = small.post("/v1/events", json=events, headers=AUTH)
        assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"


def test_reload_serves_the_newly_promoted_run(client: TestClient, runs_copy: TinyRun) -> None:
    store = RunStore(runs_copy.runs_dir)
    clone_run(runs_copy.runs_dir, runs_copy.run_id, "run-next")
    store.promote("run-next")
    assert client.get("/readyz").json()["run_id"] == runs_copy.run_id
    reloaded = client.post("/admin/reload", headers=AUTH)
    assert reloaded.status_code == 200
    assert reloaded.json() == {"previous_run_id": runs_copy.run_id, "run_id": "run-next", "changed": True}
    assert client.get("/readyz").json()["run_id"] == "run-next"
    answer = client.get("/v1/users/never-seen-user/recommendations").json()
    assert answer["run_id"] == "run-next" and not math.isnan(answer["items"][0]["score"])


def test_a_run_that_fails_to_load_leaves_serving_and_the_store_as_they_were(
    client: TestClient, runs_copy: TinyRun
) -> None:
    from feature_store.online import open_online_store
    from recsys.config import load_config

    store = RunStore(runs_copy.runs_dir)
    clone_run(runs_copy.runs_dir, runs_copy.run_id, "run-broken")
    (store.run_dir("run-broken") / "ranker" / "model.txt").write_text("not a LightGBM model\n")
    store.promote("run-broken")
    config = load_config(runs_copy.config_path, environ={})
    with open_online_store(config.features, runs_copy.runs_dir) as online:
        meta_before = online.read_meta()
    user = "never-seen-user"
    before = client.get(f"/v1/users/{user}/recommendations").json()

    reloaded = client.post("/admin/reload", headers=AUTH)
    assert reloaded.status_code >= 500 or reloaded.status_code == 409, reloaded.text
    assert client.get("/readyz").json()["run_id"] == runs_copy.run_id
    assert client.get(f"/v1/users/{user}/recommendations").json()["items"] == before["items"]
    with open_online_store(config.features, runs_copy.runs_dir) as online:
        assert online.read_meta() == meta_before  # nothing of the broken run was pushed
