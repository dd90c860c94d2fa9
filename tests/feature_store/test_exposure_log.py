"""The exposure log of online experiments: one contract for every backend (SQLite file, real redis-server)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from feature_store.online import OnlineStore, open_online_store
from feature_store.online_store import Exposure, Outcome
from recsys.config import FeaturesConfig, OnlineStoreConfig

StoreFactory = Callable[[], OnlineStore]
DAY = 86_400


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores over one backend and one place: a second one opened sees what the first wrote."""
    opened: list[OnlineStore] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def factory() -> OnlineStore:
        if request.param == "redis":
            url = request.getfixturevalue("redis_url")
            online = OnlineStoreConfig(backend="redis", redis_url=url, redis_prefix=prefix)
        else:
            online = OnlineStoreConfig(backend="sqlite", sqlite_path="online.sqlite")
        store = open_online_store(FeaturesConfig(online=online), tmp_path)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def exposure(rid: str, user: str, ts: int, arm: str = "control", experiment: str = "exp") -> Exposure:
    return Exposure(rid, experiment, arm, f"run-{arm}", user, ts, ("i1", "i2"))


def outcome(of: Exposure, item: str, ts: int, event: str = "click") -> Outcome:
    shown = item in of.items
    return Outcome(of.recommendation_id, of.experiment, of.arm, of.user_id, item, event, ts, shown, "id")


def test_exposures_are_shared_found_by_id_and_latest_per_user(make_store: StoreFactory) -> None:
    writer, reader = make_store(), make_store()
    first, second = exposure("r1", "u1", 100), exposure("r2", "u1", 160, arm="treatment")
    other = exposure("r3", "u2", 120, experiment="other")
    writer.log_exposures([first, second, other])
    writer.log_exposures([exposure("r1", "u9", 999)])  # a recommendation id is logged once
    assert reader.exposures("exp") == [first, second]
    assert reader.exposures("other") == [other]
    assert reader.exposures_by_id(["r3", "missing", "r1"]) == {"r3": other, "r1": first}
    assert reader.exposures_by_id([]) == {}
    assert reader.latest_exposure("exp", "u1") == second
    assert reader.latest_exposure("exp", "u2") is None
    assert reader.latest_exposure("other", "u2") == other


def test_outcomes_are_kept_in_order_per_experiment(make_store: StoreFactory) -> None:
    store = make_store()
    shown = exposure("r1", "u1", 100)
    store.log_exposures([shown])
    logged = [outcome(shown, "i2", 130), outcome(shown, "i9", 140, "purchase")]
    store.log_outcomes(logged)
    store.log_outcomes([])
    assert make_store().outcomes("exp") == logged
    assert [o.shown for o in logged] == [True, False]
    assert store.outcomes("other") == []


def test_forget_removes_a_users_exposures_and_outcomes(make_store: StoreFactory) -> None:
    store = make_store()
    mine, theirs = exposure("r1", "u1", 100), exposure("r2", "u2", 100)
    store.log_exposures([mine, theirs])
    store.log_outcomes([outcome(mine, "i1", 110), outcome(theirs, "i1", 110)])
    assert store.forget("u1") == 2
    assert store.exposures("exp") == [theirs]
    assert store.exposures_by_id(["r1"]) == {}
    assert store.latest_exposure("exp", "u1") is None
    assert [o.user_id for o in store.outcomes("exp")] == ["u2"]
    assert store.user_exposures("u1") == [] and store.user_outcomes("u1") == []
    assert store.user_exposures("u2") == [theirs]


def test_a_users_exposures_and_outcomes_are_read_across_experiments(make_store: StoreFactory) -> None:
    """What an export of the user shows: their entries of every experiment, in logged order, no one else's."""
    writer, reader = make_store(), make_store()
    first, theirs = exposure("r1", "u1", 100), exposure("r2", "u2", 110)
    later = exposure("r3", "u1", 120, arm="treatment", experiment="other")
    writer.log_exposures([first, theirs, later])
    mine = [outcome(first, "i1", 105), outcome(later, "i9", 130, "purchase")]
    writer.log_outcomes([mine[0], outcome(theirs, "i1", 115), mine[1]])
    assert reader.user_exposures("u1") == [first, later]
    assert reader.user_outcomes("u1") == mine
    assert reader.user_exposures("nobody") == [] and reader.user_outcomes("nobody") == []


def test_expire_drops_exposures_and_outcomes_past_the_ttl(make_store: StoreFactory) -> None:
    store = make_store()
    now = 1_000 * DAY
    ttl = int(store.config.online.ttl_days * DAY)
    old, new = exposure("r1", "u1", now - ttl - 10), exposure("r2", "u2", now - 10)
    store.log_exposures([old, new])
    store.log_outcomes([outcome(old, "i1", now - ttl - 5), outcome(new, "i1", now - 5)])
    store.expire(now)
    assert store.exposures("exp") == [new]
    assert store.exposures_by_id(["r1", "r2"]) == {"r2": new}
    assert store.latest_exposure("exp", "u1") is None
    assert [o.recommendation_id for o in store.outcomes("exp")] == ["r2"]
