"""Item features: popularity over time windows, reach, trend, freshness and mean rating.

Item state changes with every event of every user, so online it is refreshed only by the
nightly :func:`feature_store.online.push_materialized`; live events do not touch it (why: see
:mod:`feature_store.definitions`). Push-only views may use aggregations that cannot be folded
(:class:`~feature_store.aggregations.Mean`).
"""

from __future__ import annotations

from feature_store.aggregations import Count, DistinctCount, ListFirst, Max, Mean, Min, WindowCount
from feature_store.definitions import ITEM, NEVER_DAYS, NOW, TS, USER_ID, Feature, FeatureView
from feature_store.read_out import col, days_between
from recsys.config import FeaturesConfig


def trend_windows(windows_days: list[int]) -> tuple[int, int]:
    """(short, long) windows compared by the trend feature: the two longest (7 vs 30 by default)."""
    ordered = sorted(set(windows_days))
    return (ordered[-2] if len(ordered) > 1 else ordered[0]), ordered[-1]


def item_meta_view() -> FeatureView:
    """Catalog facts needed to join other views (the item's first category); no features of its own."""
    return FeatureView(
        name="item_meta",
        entity=ITEM,
        source="items",
        aggregations=(ListFirst("item_category", "categories"),),
        features=(),
        description="catalog metadata used as join keys",
    )


def item_view(config: FeaturesConfig) -> FeatureView:
    windows = tuple(sorted(set(config.windows_days)))
    short, long = trend_windows(config.windows_days)
    count = [
        Feature(
            f"item_events_{days}d",
            col(f"item_n_{days}d"),
            0.0,
            f"interactions with the item in the last {days} days",
        )
        for days in windows
    ]
    return FeatureView(
        name="item",
        entity=ITEM,
        aggregations=(
            *(WindowCount(f"item_n_{days}d", days) for days in windows),
            Count("item_n_all"),
            DistinctCount("item_n_users", USER_ID),
            Min("item_first_ts", TS),
            Max("item_last_ts", TS),
            Mean("item_rating_mean", "rating"),
            Mean("item_weight_mean", "weight"),
        ),
        features=(
            *count,
            Feature("item_events_all", col("item_n_all"), 0.0, "interactions with the item, all time"),
            Feature("item_unique_users", col("item_n_users"), 0.0, "distinct users who interacted"),
            Feature(
                "item_trend",
                (col(f"item_n_{short}d") * (1.0 / short)) / (col(f"item_n_{long}d") * (1.0 / long)),
                1.0,
                f"{short}-day rate over {long}-day rate (>1 rising); 1 when the item had no recent events",
            ),
            Feature(
                "item_days_since_first",
                days_between(NOW, "item_first_ts"),
                NEVER_DAYS,
                "days since the item's first interaction",
            ),
            Feature(
                "item_days_since_last",
                days_between(NOW, "item_last_ts"),
                NEVER_DAYS,
                "days since the item's latest interaction",
            ),
            Feature("item_mean_rating", col("item_rating_mean"), 0.0, "mean rating received; 0 if none"),
            Feature("item_mean_weight", col("item_weight_mean"), 0.0, "mean event weight; 0 if no events"),
        ),
        description="item popularity and freshness",
    )
