"""User features: activity over time windows, recency, breadth of taste and mean rating given.

Online, live events update this state in place (:func:`feature_store.online.apply_events`):
counts grow at once, but an event leaves a time window only at the next nightly push.
"""

from __future__ import annotations

from feature_store.aggregations import Count, CountNonNull, DecayedSum, DistinctCount, Max, Sum, WindowCount
from feature_store.definitions import CATEGORY, NEVER_DAYS, NOW, TS, USER, Feature, FeatureView
from feature_store.read_out import col, days_between
from recsys.config import FeaturesConfig


def affinity_half_lives(config: FeaturesConfig) -> tuple[float, ...]:
    """The category affinity's half-lives in days, shortest first, each once."""
    return tuple(sorted(set(config.affinity_half_lives_days)))


def user_decay(half_life_days: float) -> DecayedSum:
    """The user's recency-weighted event count (the denominator of category affinity)."""
    return DecayedSum(
        f"user_decay_sum_{half_life_days:g}d", f"user_decay_ref_ts_{half_life_days:g}d", half_life_days
    )


def user_view(config: FeaturesConfig) -> FeatureView:
    windows = tuple(sorted(set(config.windows_days)))
    return FeatureView(
        name="user",
        entity=USER,
        aggregations=(
            *(WindowCount(f"user_n_{days}d", days) for days in windows),
            Count("user_n_all"),
            Max("user_last_ts", TS),
            Sum("user_rating_sum", "rating"),
            CountNonNull("user_rating_count", "rating"),
            DistinctCount("user_n_categories", CATEGORY),
            *(user_decay(half_life) for half_life in affinity_half_lives(config)),
        ),
        features=(
            *(
                Feature(
                    f"user_events_{days}d",
                    col(f"user_n_{days}d"),
                    0.0,
                    f"user's events in the last {days} days",
                )
                for days in windows
            ),
            Feature("user_events_all", col("user_n_all"), 0.0, "user's events, all time"),
            Feature(
                "user_days_since_last",
                days_between(NOW, "user_last_ts"),
                NEVER_DAYS,
                "days since the user's latest event",
            ),
            Feature(
                "user_n_categories", col("user_n_categories"), 0.0, "distinct categories the user consumed"
            ),
            Feature(
                "user_mean_rating",
                col("user_rating_sum") / col("user_rating_count"),
                0.0,
                "mean rating the user gave; 0 if none",
            ),
        ),
        description="user activity and taste breadth",
    )
