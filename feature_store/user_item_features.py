"""User×item and user×category features: has the user seen this item, and how much do they like its category.

Category affinity is the recency-weighted share of the user's events in the candidate's
first category: each past event counts ``2 ** (-age / half_life)``, one feature per half-life
(``features.affinity_half_lives_days``). The state keeps the decayed sums with the moment they
refer to (``*_decay_ref_ts_*``), so a sum can be moved to any later moment by one multiplication,
and a live event updates it exactly.
"""

from __future__ import annotations

from feature_store.aggregations import Count, DecayedSum, Max
from feature_store.definitions import (
    NEVER_DAYS,
    NOW,
    TS,
    USER_CATEGORY,
    USER_ITEM,
    Feature,
    FeatureView,
)
from feature_store.read_out import col, days_between
from feature_store.user_features import affinity_half_lives, user_decay
from recsys.config import FeaturesConfig


def user_item_view() -> FeatureView:
    return FeatureView(
        name="user_item",
        entity=USER_ITEM,
        aggregations=(Count("ui_n"), Max("ui_last_ts", TS)),
        features=(
            Feature("ui_seen", col("ui_n") > 0, 0.0, "1 if the user interacted with the item before"),
            Feature("ui_count", col("ui_n"), 0.0, "how often the user interacted with the item"),
            Feature(
                "ui_days_since",
                days_between(NOW, "ui_last_ts"),
                NEVER_DAYS,
                "days since the user last interacted with the item",
            ),
        ),
        description="repeat consumption",
    )


def user_category_view(config: FeaturesConfig) -> FeatureView:
    half_lives = affinity_half_lives(config)
    in_category = {
        half_life: DecayedSum(f"uc_decay_sum_{half_life:g}d", f"uc_decay_ref_ts_{half_life:g}d", half_life)
        for half_life in half_lives
    }
    return FeatureView(
        name="user_category",
        entity=USER_CATEGORY,
        aggregations=tuple(in_category.values()),
        features=tuple(
            Feature(
                f"user_category_affinity_{half_life:g}d",
                in_category[half_life].at_now() / user_decay(half_life).at_now(),
                0.0,
                f"recency-weighted share (half-life {half_life:g} days) of the user's events "
                "in the item's category",
            )
            for half_life in half_lives
        ),
        description="user taste for the candidate's category, now and over longer spans",
    )
