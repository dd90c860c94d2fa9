"""Adding a feature is one declaration: a test-local view works offline, online and live, no other edit."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from fs_logs import DAY, make_log
from polars.testing import assert_frame_equal

from feature_store import repository
from feature_store.aggregations import DistinctCount, Min, Sum
from feature_store.columns import ITEM_ID, NEVER_DAYS, NOW, TS, WEIGHT
from feature_store.definitions import USER, Feature, FeatureView
from feature_store.offline import materialize, training_frame
from feature_store.online import apply_events, get_online_features, open_online_store, push_materialized
from feature_store.read_out import col, days_between
from recsys.config import FeaturesConfig, OnlineStoreConfig
from recsys.ranking.behaviour import OnlineBehaviour

CONFIG = FeaturesConfig(
    recent_items=4,
    covisit_max_gap=2,
    covisit_max_seconds=3 * DAY,
    covisit_top_per_item=3,
    online=OnlineStoreConfig(backend="sqlite", sqlite_path="online.sqlite"),
)
NEW = ["user_weight_per_event", "user_days_since_first", "user_n_items", "user_heavy"]
CANDIDATES = ["i1", "i2", "i3", "i0", "i8", "unknown"]


def spend_view(config: FeaturesConfig) -> FeatureView:
    """The one declaration: state (three aggregations) and four read-outs, one reading another view."""
    return FeatureView(
        name="user_spend",
        entity=USER,
        aggregations=(
            Sum("us_weight_sum", WEIGHT),
            Min("us_first_ts", TS),
            DistinctCount("us_n_items", ITEM_ID),  # folded live through the user×item view's state
        ),
        features=(
            Feature("user_weight_per_event", col("us_weight_sum") / col("user_n_all"), 0.0, "mean weight"),
            Feature("user_days_since_first", days_between(NOW, "us_first_ts"), NEVER_DAYS, "tenure"),
            Feature("user_n_items", col("us_n_items"), 0.0, "distinct items"),
            Feature("user_heavy", col("us_weight_sum") >= 20.0, 0.0, "1 if the weights sum to 20 or more"),
        ),
    )


@pytest.fixture
def with_spend_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists the view in the repository, as a developer adding it would."""
    every_view = repository.views
    monkeypatch.setattr(repository, "views", lambda config: [*every_view(config), spend_view(config)])


def expected(log: pl.DataFrame, user: str, moment: int) -> dict[str, float]:
    past = log.filter((pl.col("user_id") == user) & (pl.col("ts") < moment))
    if past.is_empty():
        return {
            "user_weight_per_event": 0.0,
            "user_days_since_first": NEVER_DAYS,
            "user_n_items": 0.0,
            "user_heavy": 0.0,
        }
    total = float(past["weight"].sum())
    return {
        "user_weight_per_event": total / past.height,
        "user_days_since_first": (moment - int(past["ts"].min())) * (1.0 / DAY),  # type: ignore[operator]
        "user_n_items": float(past["item_id"].n_unique()),
        "user_heavy": float(total >= 20.0),
    }


def test_a_feature_declared_once_works_offline_online_and_live(with_spend_view: None, tmp_path: Path) -> None:
    catalog, log = make_log(4)
    log = log.with_columns(pl.col("weight") * 0.5)  # multiples of 1/2: sums exact in any order
    start, end = (int(log["ts"].quantile(q)) for q in (0.5, 0.8))  # type: ignore[arg-type]
    newcomer = pl.DataFrame(
        {"user_id": "newbie", "item_id": ["i1", "i1", "i3"], "ts": [start + 60 * k for k in range(3)]}
    ).with_columns(rating=pl.lit(None, pl.Float64), weight=2.5, event=pl.lit("view"))
    log = pl.concat([log, newcomer.select(log.columns)]).sort("ts")
    users = [*sorted(set(log["user_id"]))[:3], "newbie", "nobody"]

    # offline: point-in-time, in the default feature set, which now has another version
    assert set(NEW) <= set(repository.default_feature_set(CONFIG).features)
    assert repository.default_feature_set(CONFIG).version != repository.DEFAULT_FEATURE_SET.version
    for user in users:
        rows = pl.DataFrame({"user_id": user, "item_id": CANDIDATES, "ts": end})
        frame = training_frame(rows, log, catalog, CONFIG)
        for name, value in expected(log, user, end).items():
            assert frame[name].to_list() == [value] * len(CANDIDATES), (user, name)

    # online: pushed at start, then live events until end; the store and the fast path agree with offline
    with open_online_store(CONFIG, tmp_path) as store:
        push_materialized(store, materialize(log, catalog, start, CONFIG), start)
        for batch in log.filter((pl.col("ts") >= start) & (pl.col("ts") < end)).iter_slices(5):
            apply_events(store, batch, catalog, CONFIG)
        behaviour = OnlineBehaviour(store, catalog, CONFIG)
        assert set(NEW) <= set(behaviour.names())
        for user in users:
            online = get_online_features(store, user, CANDIDATES, end)
            rows = pl.DataFrame({"user_id": user, "item_id": CANDIDATES, "ts": end})
            assert_frame_equal(online.select(NEW), training_frame(rows, log, catalog, CONFIG).select(NEW))
            assert_frame_equal(behaviour.features(rows), online, check_exact=True)
