"""User features: activity over time windows, recency, breadth of taste and mean rating given.

Online, live events update this state in place (:func:`feature_store.online.apply_events`):
counts grow at once, but an event leaves a time window only at the next nightly push.
"""

from __future__ import annotations

import polars as pl

from feature_store.definitions import (
    AGE,
    AS_OF,
    CATEGORY,
    DAY,
    DECAY,
    NEVER_DAYS,
    NOW,
    TS,
    USER,
    Feature,
    FeatureView,
    days_between,
    deterministic_sum,
)
from recsys.config import FeaturesConfig


def user_view(config: FeaturesConfig) -> FeatureView:
    windows = tuple(sorted(set(config.windows_days)))
    return FeatureView(
        name="user",
        entity=USER,
        windows_days=windows,
        aggregations=(
            *((pl.col(AGE) <= days * DAY).sum().alias(f"user_n_{days}d") for days in windows),
            pl.len().alias("user_n_all"),
            pl.col(TS).max().alias("user_last_ts"),
            pl.col("rating").sum().alias("user_rating_sum"),
            pl.col("rating").count().alias("user_rating_count"),
            pl.col(CATEGORY).drop_nulls().n_unique().alias("user_n_categories"),
            deterministic_sum(DECAY).alias("user_decay_sum"),
            pl.col(AS_OF).first().alias("user_decay_ref_ts"),
        ),
        features=(
            *(
                Feature(
                    f"user_events_{days}d",
                    pl.col(f"user_n_{days}d"),
                    0.0,
                    f"user's events in the last {days} days",
                )
                for days in windows
            ),
            Feature("user_events_all", pl.col("user_n_all"), 0.0, "user's events, all time"),
            Feature(
                "user_days_since_last",
                days_between(NOW, "user_last_ts"),
                NEVER_DAYS,
                "days since the user's latest event",
            ),
            Feature(
                "user_n_categories", pl.col("user_n_categories"), 0.0, "distinct categories the user consumed"
            ),
            Feature(
                "user_mean_rating",
                pl.col("user_rating_sum") / pl.col("user_rating_count"),
                0.0,
                "mean rating the user gave; 0 if none",
            ),
        ),
        description="user activity and taste breadth",
    )
