"""One contract suite for every online store backend (SQLite file, real redis-server)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from fs_logs import DAY, make_log
from polars.testing import assert_frame_equal
from servers import redis_server

from feature_store.definitions import FeatureDefinitionError
from feature_store.offline import HISTORY, FeatureInputError, materialize, training_frame
from feature_store.online import (
    STORE_UNAVAILABLE,
    OnlineStore,
    OnlineStoreError,
    Record,
    SQLiteOnlineStore,
    apply_events,
    get_online_features,
    get_recommendations,
    get_user_history,
    logged_interactions,
    open_online_store,
    push_materialized,
    user_data,
)
from recsys.config import FeaturesConfig, OnlineStoreConfig
from recsys.data.schema import INTERACTIONS_SCHEMA

CONFIG = FeaturesConfig(
    recent_items=4, covisit_max_gap=2, covisit_max_seconds=3 * DAY, covisit_top_per_item=3
)
AFFINITIES = [f"user_category_affinity_{days:g}d" for days in CONFIG.affinity_half_lives_days]
USERS = ["u0", "u1", "u3", "nobody"]
CANDIDATES = ["i1", "i2", "i3", "i4", "i5", "i6", "i7", "i0", "i8", "unknown"]

StoreFactory = Callable[..., OnlineStore]


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[OnlineStore] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def factory(config: FeaturesConfig = CONFIG) -> OnlineStore:
        if request.param == "redis":
            url = request.getfixturevalue("redis_url")
            online = OnlineStoreConfig(backend="redis", redis_url=url, redis_prefix=prefix)
        else:
            online = OnlineStoreConfig(backend="sqlite", sqlite_path="online.sqlite")
        store = open_online_store(config.model_copy(update={"online": online}), tmp_path)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def offline(log: pl.DataFrame, catalog: pl.DataFrame, user: str, moment: int) -> pl.DataFrame:
    rows = pl.DataFrame({"user_id": user, "item_id": CANDIDATES, "ts": moment})
    return training_frame(rows, log, catalog, CONFIG)


def snapshot(store: OnlineStore, moment: int) -> list[pl.DataFrame]:
    return [get_online_features(store, user, CANDIDATES, moment) for user in USERS]


@pytest.mark.parametrize("seed", [1, 2])
def test_online_features_equal_training_frame_at_the_push_time(make_store: StoreFactory, seed: int) -> None:
    catalog, log = make_log(seed)
    as_of = int(log["ts"].quantile(0.6))  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of)
    for user in USERS:
        online = get_online_features(store, user, CANDIDATES, as_of)
        assert_frame_equal(online, offline(log, catalog, user, as_of), check_exact=True)
        past = log.filter((pl.col("user_id") == user) & (pl.col("ts") < as_of)).sort("ts", "item_id")
        expected = list(past.select("item_id", "ts").tail(CONFIG.recent_items).iter_rows())
        assert get_user_history(store, user) == expected


def test_batch_recommendations_are_pushed_with_the_features_and_replaced_whole(
    make_store: StoreFactory,
) -> None:
    catalog, log = make_log(5)
    as_of = int(log["ts"].quantile(0.6))  # type: ignore[arg-type]
    recs = pl.DataFrame(
        {
            "user_id": ["u1", "u0", "u1"],
            "item_id": ["i3", "i2", "i1"],
            "rank": [2, 1, 1],
            "score": [0.5, 0.9, 0.7],
        }
    )
    store = make_store()
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of, recs, meta={"run_id": "run-a"})
    assert get_recommendations(store, "u1") == [("i1", 0.7), ("i3", 0.5)]  # in rank order
    assert get_recommendations(store, "u0") == [("i2", 0.9)]
    assert get_recommendations(store, "nobody") == []
    assert store.read_meta()["run_id"] == "run-a"

    push_materialized(
        store, materialize(log, catalog, as_of, CONFIG), as_of, recs.filter(pl.col("user_id") == "u0")
    )
    assert get_recommendations(store, "u1") == []  # a push replaces the previous run's state whole
    assert "run_id" not in store.read_meta()


def test_live_events_move_user_state_to_the_new_moment(make_store: StoreFactory) -> None:
    catalog, log = make_log(3)
    start, end = (int(log["ts"].quantile(q)) for q in (0.5, 0.8))  # type: ignore[arg-type]
    newcomer = (
        pl.DataFrame(  # first events ever, in two categories (i1: chess, i3: jazz) and one without (i0)
            {
                "user_id": "newbie",
                "item_id": ["i1", "i3", "i0", "i1"],
                "ts": [start + 60 * k for k in range(4)],
            }
        ).with_columns(rating=pl.Series([4.0, None, 2.0, None]), weight=1.0, event=pl.lit("view"))
    )
    log = pl.concat([log, newcomer.select(log.columns)]).sort("ts")
    store = make_store()
    push_materialized(store, materialize(log, catalog, start, CONFIG), start)
    live = log.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    for batch in live.iter_slices(7):  # several batches, as a consumer would send them
        apply_events(store, batch, catalog, CONFIG)

    # Refreshed by events: everything user-side. Item state and the co-visitation table wait for the push,
    # and events leave user time windows only then.
    live_features = ["user_events_all", "user_days_since_last", "user_n_categories", "user_mean_rating"]
    live_features += ["ui_seen", "ui_count", "ui_days_since", *AFFINITIES]
    for user in [*USERS, "newbie"]:
        online = get_online_features(store, user, CANDIDATES, end).select(live_features)
        assert_frame_equal(online, offline(log, catalog, user, end).select(live_features), rtol=1e-9)
        past = log.filter((pl.col("user_id") == user) & (pl.col("ts") < end)).sort("ts", "item_id")
        assert get_user_history(store, user) == list(
            past.select("item_id", "ts").tail(CONFIG.recent_items).iter_rows()
        )


def test_a_failing_batch_changes_nothing(make_store: StoreFactory) -> None:
    catalog, log = make_log(4)
    as_of = int(log["ts"].quantile(0.5))  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of)
    before = snapshot(store, as_of + DAY)
    new = log.filter(pl.col("ts") >= as_of).head(5)
    one_bad_row = pl.concat([new.head(4), new.tail(1).with_columns(pl.lit(None, pl.String).alias("user_id"))])
    with pytest.raises(FeatureInputError, match="row 4 has no user_id"):
        apply_events(store, one_bad_row, catalog, CONFIG)
    too_old = pl.concat([new.head(4), log.filter(pl.col("ts") < as_of).head(1)])
    with pytest.raises(FeatureInputError, match="before the last push"):
        apply_events(store, too_old, catalog, CONFIG)
    good = Record(
        "user_item", ("u0", "i1"), {"user_id": "u0", "item_id": "i1", "ui_n": 99, "ui_last_ts": as_of}, as_of
    )
    with pytest.raises(FeatureDefinitionError, match="unknown view 'nope'"):
        store.write_batch([good, Record("nope", ("u0",), {}, as_of)])
    with pytest.raises(
        FeatureInputError, match=r"unknown columns \['n'\], missing columns \['ui_last_ts', 'ui_n'\]"
    ):
        store.write_batch([good, Record("user_item", ("u0", "i2"), {"n": 1}, as_of)])
    with pytest.raises(FeatureInputError, match="not storable"):
        store.write_batch(
            [good, Record("user_item", ("u0", "i2"), {**good.values, "ui_n": float("nan")}, as_of)]
        )
    for was, now in zip(before, snapshot(store, as_of + DAY), strict=True):
        assert_frame_equal(now, was, check_exact=True)
    assert store.write_batch([good]) == 1  # the same good record alone goes through
    assert get_online_features(store, "u0", ["i1"], as_of)["ui_count"].item() == 99


def test_wrong_keys_and_unknown_names_are_named(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(FeatureDefinitionError, match=r"key \('u1',\) does not match entity keys"):
        store.read_many("user_item", [("u1",)])
    with pytest.raises(FeatureDefinitionError, match="unknown view 'users'"):
        store.read_many("users", [("u1",)])
    catalog, log = make_log(1)
    frames = materialize(log, catalog, int(log["ts"].max()) + 1, CONFIG)  # type: ignore[arg-type]
    with pytest.raises(FeatureDefinitionError, match="materialized view 'user' lacks columns user_n_all"):
        push_materialized(store, {**frames, "user": frames["user"].drop("user_n_all")}, 1)
    with pytest.raises(FeatureDefinitionError, match="lack view 'history'"):
        push_materialized(store, {name: frame for name, frame in frames.items() if name != HISTORY}, 1)


def test_reading_one_users_items_equals_reading_their_keys(make_store: StoreFactory) -> None:
    store = make_store()
    catalog, log = make_log(1)
    push_materialized(store, materialize(log, catalog, int(log["ts"].max()) + 1, CONFIG), 1)  # type: ignore[arg-type]
    user = str(log["user_id"][0])
    items = [*log.filter(pl.col("user_id") == user)["item_id"].unique().sort().to_list(), "never-seen"]
    by_key = store.read_many("user_item", [(user, item) for item in items])
    assert store.read_user_items("user_item", user, items) == by_key
    assert by_key[0] is not None and by_key[-1] is None
    assert store.read_user_items("user_item", user, []) == []
    with pytest.raises(FeatureDefinitionError, match="bad user_id"):
        store.read_user_items("user_item", "u\x1fx", items)
    with pytest.raises(FeatureDefinitionError, match="bad item_id ''"):
        store.read_user_items("user_item", user, ["i1", ""])
    with pytest.raises(FeatureDefinitionError, match="'user' is not keyed by"):
        store.read_user_items("user", user, items)


def test_a_redis_server_gone_is_reported_as_the_store_being_unavailable(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        online = OnlineStoreConfig(backend="redis", redis_url=url, redis_prefix="gone")
        store = open_online_store(CONFIG.model_copy(update={"online": online}), tmp_path)
        assert store.read_many("user", [("u1",)]) == [None]
    with pytest.raises(STORE_UNAVAILABLE):  # a request answers 503 and the client retries
        store.read_many("user", [("u1",)])
    store.close()


def test_push_replaces_everything_and_stale_definitions_are_refused(make_store: StoreFactory) -> None:
    catalog, log = make_log(5)
    late, early = int(log["ts"].max()) + 1, int(log["ts"].min()) + 1  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, late, CONFIG), late)
    assert get_user_history(store, "u1")
    push_materialized(store, materialize(log, catalog, early, CONFIG), early)
    assert_frame_equal(
        get_online_features(store, "u1", CANDIDATES, early), offline(log, catalog, "u1", early)
    )
    assert store.read_meta()["as_of"] == str(early)
    other = make_store(CONFIG.model_copy(update={"windows_days": [2, 14]}))
    with pytest.raises(OnlineStoreError, match="push a fresh materialization"):
        get_online_features(other, "u1", ["i1"], late)


def test_expire_drops_state_not_refreshed_within_the_ttl(make_store: StoreFactory) -> None:
    catalog, log = make_log(6)
    as_of = int(log["ts"].quantile(0.5))  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of)
    fresh = as_of + 40 * DAY
    event = pl.DataFrame({"user_id": ["u2"], "item_id": ["i3"], "ts": [fresh]})
    apply_events(store, event, catalog, CONFIG)
    assert store.expire(as_of + 10 * DAY) == 0
    assert store.expire(fresh) > 0  # everything pushed is 40 days old, the ttl is 30
    assert get_user_history(store, "u1") == []
    assert get_user_history(store, "u2")[-1] == ("i3", fresh)  # refreshed by the event: kept whole
    assert store.read_many("user_item", [("u2", "i3"), ("u1", "i3")])[1] is None


def test_corrupt_sqlite_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OnlineStoreError, match=r"online\.sqlite: unreadable or corrupt"):
        SQLiteOnlineStore(CONFIG, path)


def test_unreachable_redis_is_named() -> None:
    online = OnlineStoreConfig(backend="redis", redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(OnlineStoreError, match="unreachable"):
        open_online_store(CONFIG.model_copy(update={"online": online}), ".")


# -- the event log: durable, replayed, idempotent, serialized through the store -------------------------

LIVE_FEATURES = [
    "user_events_all",
    "user_days_since_last",
    "user_n_categories",
    "user_mean_rating",
    "ui_seen",
    "ui_count",
    "ui_days_since",
    *AFFINITIES,
]


def assert_live_state_equals_offline(
    store: OnlineStore, log: pl.DataFrame, catalog: pl.DataFrame, end: int
) -> None:
    for user in [*USERS, "u2", "u4"]:
        online = get_online_features(store, user, CANDIDATES, end).select(LIVE_FEATURES)
        assert_frame_equal(online, offline(log, catalog, user, end).select(LIVE_FEATURES), rtol=1e-9)
        past = log.filter((pl.col("user_id") == user) & (pl.col("ts") < end)).sort("ts", "item_id")
        assert get_user_history(store, user) == list(
            past.select("item_id", "ts").tail(CONFIG.recent_items).iter_rows()
        )


def test_a_push_replays_the_logged_events_newer_than_its_data(make_store: StoreFactory) -> None:
    catalog, log = make_log(3)
    start, middle, end = (int(log["ts"].quantile(q)) for q in (0.4, 0.6, 0.8))  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, start, CONFIG), start, meta={"run_id": "a"})
    live = log.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    for batch in live.iter_slices(7):
        assert apply_events(store, batch, catalog, CONFIG).logged == batch.height
    assert len(store.logged_events()) == live.height
    assert_live_state_equals_offline(store, log, catalog, end)

    # the same run pushed again (a reload or a rollback to it): every posted event is still counted
    push_materialized(store, materialize(log, catalog, start, CONFIG), start, meta={"run_id": "a"})
    assert_live_state_equals_offline(store, log, catalog, end)

    # a new run whose data ends at `middle` (it read the log up to there): the events after it are replayed
    push_materialized(store, materialize(log, catalog, middle, CONFIG), middle, meta={"run_id": "b"})
    assert_live_state_equals_offline(store, log, catalog, end)
    assert store.read_meta()["run_id"] == "b"
    assert len(store.logged_events()) == live.height  # a push keeps the log


def test_a_retried_event_id_counts_once(make_store: StoreFactory) -> None:
    catalog, log = make_log(4)
    as_of = int(log["ts"].max()) + 1  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of)
    before = get_online_features(store, "u1", ["i3"], as_of + 100)["ui_count"].item()
    event = pl.DataFrame({"user_id": ["u1"], "item_id": ["i3"], "ts": [as_of + 10], "event_id": ["e-1"]})
    assert apply_events(store, event, catalog, CONFIG).duplicates == 0
    retried = apply_events(store, event, catalog, CONFIG)
    assert (retried.records, retried.logged, retried.duplicates) == (0, 0, 1)
    twice_in_one_batch = pl.concat([event, event]).with_columns(event_id=pl.lit("e-2"))
    assert apply_events(store, twice_in_one_batch, catalog, CONFIG).duplicates == 1
    anonymous = event.drop("event_id")  # no id: nothing to recognise a retry by, so it counts again
    assert apply_events(store, pl.concat([anonymous, anonymous]), catalog, CONFIG).logged == 2
    assert get_online_features(store, "u1", ["i3"], as_of + 100)["ui_count"].item() == before + 4
    assert store.known_event_ids(["e-1", "e-2", "e-3"]) == {"e-1", "e-2"}
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of)  # replayed once each
    assert get_online_features(store, "u1", ["i3"], as_of + 100)["ui_count"].item() == before + 4
    assert apply_events(store, event, catalog, CONFIG).duplicates == 1  # ids outlive a push


def test_the_log_is_read_back_as_interactions(make_store: StoreFactory) -> None:
    catalog, log = make_log(5)
    start = int(log["ts"].quantile(0.5))  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, start, CONFIG), start)
    live = log.filter(pl.col("ts") >= start)
    apply_events(store, live.sample(fraction=1.0, shuffle=True, seed=1), catalog, CONFIG)
    exported = logged_interactions(store)
    assert exported.schema == INTERACTIONS_SCHEMA
    key = ["ts", "user_id", "item_id", "rating"]
    assert_frame_equal(exported.sort(key), live.select(exported.columns).sort(key))
    later = int(live["ts"].quantile(0.5))  # type: ignore[arg-type]
    assert_frame_equal(
        logged_interactions(store, since=later).sort(key),
        live.filter(pl.col("ts") >= later).select(exported.columns).sort(key),
    )


def test_expire_drops_old_log_entries_and_their_ids(make_store: StoreFactory) -> None:
    catalog, log = make_log(6)
    as_of = int(log["ts"].max()) + 1  # type: ignore[arg-type]
    store = make_store()
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of)
    events = pl.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["i1", "i2"],
            "ts": [as_of, as_of + 20 * DAY],
            "event_id": ["a", "b"],
        }
    )
    apply_events(store, events, catalog, CONFIG)
    store.expire(as_of + 35 * DAY)  # ttl 30 days: the first event's entry goes, the second stays
    assert [event.event_id for event in store.logged_events()] == ["b"]
    assert store.known_event_ids(["a", "b"]) == {"b"}


def test_concurrent_writers_and_pushes_lose_no_event(make_store: StoreFactory) -> None:
    """Writers on separate connections (as separate workers or hosts) serialize through the store:
    every event is counted exactly once, also while pushes replace the state."""
    catalog, log = make_log(7)
    as_of = int(log["ts"].max()) + 1  # type: ignore[arg-type]
    frames = materialize(log, catalog, as_of, CONFIG)
    make_store().close()  # create the store before the threads race to
    writers, per_writer = 3, 8
    errors: list[BaseException] = []

    def post(writer: int) -> None:
        with make_store() as store:
            for n in range(per_writer):
                event = pl.DataFrame(
                    {"user_id": ["racer"], "item_id": [f"i{n % 8}"], "ts": [as_of + writer * 100 + n]}
                )
                apply_events(store, event, catalog, CONFIG)

    def push() -> None:
        with make_store() as store:
            for _ in range(3):
                push_materialized(store, frames, as_of)

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(lambda w=w: post(w),)) for w in range(writers)]
    threads.append(threading.Thread(target=guarded, args=(push,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    store = make_store()
    (racer,) = store.read_many("user", [("racer",)])
    assert racer is not None and racer["user_n_all"] == writers * per_writer
    assert len(store.logged_events(user_id="racer")) == writers * per_writer


def test_forget_removes_state_history_recommendations_and_log(make_store: StoreFactory) -> None:
    catalog, log = make_log(8)
    as_of = int(log["ts"].max()) + 1  # type: ignore[arg-type]
    gone = "forget-me-4711"
    log = pl.concat([log, log.filter(pl.col("user_id") == "u1").with_columns(user_id=pl.lit(gone))])
    recs = pl.DataFrame(
        {"user_id": [gone, "u0"], "item_id": ["i1", "i2"], "rank": [1, 1], "score": [0.5, 0.9]}
    )
    store = make_store()
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of, recs)
    events = pl.DataFrame(
        {"user_id": [gone, "u0"], "item_id": ["i8", "i8"], "ts": [as_of, as_of], "event_id": ["x", "y"]}
    )
    apply_events(store, events, catalog, CONFIG)
    held = user_data(store, gone)
    assert {"user", HISTORY, "user_item", "user_category", "recommendations"} <= set(held)
    assert [event["item_id"] for event in held["events"]] == ["i8"]
    assert {state["item_id"] for state in held["user_item"]} == set(
        log.filter(pl.col("user_id") == gone)["item_id"].to_list()
    ) | {"i8"}
    kept = user_data(store, "u0")

    assert store.forget(gone) > 0
    nothing = {"events": [], "exposures": [], "outcomes": []}
    assert user_data(store, gone) == nothing
    assert get_recommendations(store, gone) == [] and get_user_history(store, gone) == []
    assert store.known_event_ids(["x", "y"]) == {"y"}
    assert user_data(store, "u0") == kept  # nobody else is touched
    push_materialized(
        store, materialize(log.filter(pl.col("user_id") != gone), catalog, as_of, CONFIG), as_of
    )
    assert user_data(store, gone) == nothing  # the forgotten events are not replayed


def test_a_forgotten_user_leaves_no_bytes_in_the_sqlite_files(tmp_path: Path) -> None:
    catalog, log = make_log(9)
    as_of = int(log["ts"].max()) + 1  # type: ignore[arg-type]
    gone = "forget-me-4711"
    log = pl.concat([log, log.filter(pl.col("user_id") == "u2").with_columns(user_id=pl.lit(gone))])
    store = SQLiteOnlineStore(CONFIG, tmp_path / "online.sqlite")
    push_materialized(store, materialize(log, catalog, as_of, CONFIG), as_of)
    apply_events(store, pl.DataFrame({"user_id": [gone], "item_id": ["i1"], "ts": [as_of]}), catalog, CONFIG)
    store.forget(gone)
    files = list(tmp_path.glob("online.sqlite*"))
    assert files and all(gone.encode() not in path.read_bytes() for path in files)
    store.close()
