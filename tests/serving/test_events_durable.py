"""Posted events survive a new run being promoted and reloaded, and a retried event counts once."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
from fastapi.testclient import TestClient
from srv_helpers import TOKEN, TinyRun, clone_run, settings_for

from feature_store.online import logged_interactions, open_online_store
from recsys.artifacts import RunStore
from recsys.config import load_config

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(runs_copy: TinyRun) -> Iterator[TestClient]:
    from serving.app import create_app

    with TestClient(create_app(settings_for(runs_copy))) as test_client:
        yield test_client


def _promote_a_new_run(run: TinyRun, run_id: str) -> None:
    """A new run (the same artifacts under a new id), promoted as the nightly job would."""
    store = RunStore(run.runs_dir)
    clone_run(run.runs_dir, run.run_id, run_id)
    store.promote(run_id)


def _explained(client: TestClient, user: str) -> dict[str, float | None]:
    answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 1, "explain": True}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return {f["feature"]: f["value"] for f in answer.json()["items"][0]["explanation"]["features"]}


def test_posted_events_survive_a_reload_of_a_new_run_and_retries_count_once(
    client: TestClient, runs_copy: TinyRun
) -> None:
    interactions = pl.read_parquet(runs_copy.runs_dir / runs_copy.run_id / "data" / "interactions.parquet")
    counts = interactions.group_by("user_id").len().sort(["len", "user_id"], descending=[True, False])
    user, in_run = counts.row(5)
    before = client.get(f"/v1/users/{user}/recommendations", params={"k": 20}).json()
    clicked = [item["item_id"] for item in before["items"][:3]]
    ts = before["as_of"] + 60
    events = [
        {"user_id": user, "item_id": item, "ts": ts + n, "event": "click", "event_id": f"{user}-{n}"}
        for n, item in enumerate(clicked)
    ]
    first = client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json()["duplicates"] == 0
    retry = client.post(
        "/v1/events", json={"events": events}, headers=AUTH
    )  # the client never saw the answer
    assert (
        retry.status_code == 200 and retry.json()["duplicates"] == 3 and retry.json()["records_written"] == 0
    )
    one_again = client.post("/v1/events", json=events[0], headers=AUTH)
    assert one_again.json()["duplicates"] == 1
    assert _explained(client, user)["user_events_all"] == in_run + 3

    _promote_a_new_run(runs_copy, "run-next")
    reloaded = client.post("/admin/reload", headers=AUTH)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["run_id"] == "run-next" and reloaded.json()["changed"]
    config = load_config(runs_copy.config_path, environ={})
    with open_online_store(config.features, runs_copy.runs_dir) as store:
        assert store.read_meta()["run_id"] == "run-next"  # the reload pushed the new run's state

    after = client.get(f"/v1/users/{user}/recommendations", params={"k": 20}).json()
    assert after["run_id"] == "run-next"
    assert after["as_of"] == ts + len(clicked)  # the latest posted event is still the user's latest
    assert set(clicked).isdisjoint(item["item_id"] for item in after["items"])  # seen items excluded
    explained = _explained(client, user)
    assert explained["user_events_all"] == in_run + 3  # each event counted once, none lost
    assert explained["user_days_since_last"] == pytest.approx(1 / 86_400)
    with open_online_store(config.features, runs_copy.runs_dir) as store:
        logged = logged_interactions(store)
    assert logged["item_id"].to_list() == clicked and logged["event"].to_list() == ["click"] * 3


def test_delete_forgets_a_user_in_the_store_and_the_runs(client: TestClient, runs_copy: TinyRun) -> None:
    interactions = pl.read_parquet(runs_copy.runs_dir / runs_copy.run_id / "data" / "interactions.parquet")
    user = (
        interactions.group_by("user_id")
        .len()
        .sort(["len", "user_id"], descending=[True, False])["user_id"][2]
    )
    before = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
    assert not before["fallback"]
    event = {
        "user_id": user,
        "item_id": before["items"][0]["item_id"],
        "ts": before["as_of"] + 5,
        "event_id": "z",
    }
    assert client.post("/v1/events", json=event, headers=AUTH).status_code == 200

    assert client.delete(f"/v1/users/{user}").status_code == 401
    forgotten = client.delete(f"/v1/users/{user}", headers=AUTH)
    assert forgotten.status_code == 200, forgotten.text
    body = forgotten.json()
    assert body["tombstoned"] and body["store_entries_removed"] > 0 and body["run_files_rewritten"] > 0
    assert client.delete(f"/v1/users/{user}", headers=AUTH).json()["tombstoned"] is False

    after = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
    assert after["fallback"]  # no history left: neither the run's nor the live one
    config = load_config(runs_copy.config_path, environ={})
    with open_online_store(config.features, runs_copy.runs_dir) as store:
        assert logged_interactions(store).filter(pl.col("user_id") == user).is_empty()
    for name in (
        "data/interactions.parquet",
        "recommendations/recommendations.parquet",
        "features/user.parquet",
    ):
        frame = pl.read_parquet(runs_copy.runs_dir / runs_copy.run_id / name)
        assert frame.filter(pl.col("user_id") == user).is_empty(), name
    # weight arrays (torch, numpy, ONNX): a short id's bytes occur there by chance
    numeric = {".safetensors", ".npy", ".npz", ".onnx"}
    residue = [
        str(path.relative_to(runs_copy.runs_dir))
        for path in runs_copy.runs_dir.rglob("*")
        if path.is_file() and path.suffix not in numeric and user.encode() in path.read_bytes()
    ]
    assert residue == []
