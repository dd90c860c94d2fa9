"""User×item and user×category features: has the user seen this item, and how much do they like its category.

Category affinity is the recency-weighted share of the user's events in the candidate's
first category: each past event counts ``2 ** (-age / half_life)``. The state keeps the
decayed sums with the moment they refer to (``*_decay_ref_ts``), so a sum can be moved to
any later moment by one multiplication, and a live event updates it exactly.
"""

from __future__ import annotations

import polars as pl

from feature_store.definitions import (
    AS_OF,
    CATEGORY,
    DECAY,
    NEVER_DAYS,
    NOW,
    TS,
    USER_CATEGORY,
    USER_ITEM,
    Feature,
    FeatureView,
    days_between,
    deterministic_sum,
)
from recsys.config import FeaturesConfig


def decayed(sum_column: str, ref_column: str, half_life_days: float) -> pl.Expr:
    """A decayed sum stored at ``ref_column`` moved forward to ``NOW`` (halves every ``half_life_days``)."""
    return pl.col(sum_column) * (2.0 ** (days_between(ref_column, NOW) * (1.0 / half_life_days)))


def user_item_view() -> FeatureView:
    return FeatureView(
        name="user_item",
        entity=USER_ITEM,
        aggregations=(pl.len().alias("ui_n"), pl.col(TS).max().alias("ui_last_ts")),
        features=(
            Feature(
                "ui_seen",
                (pl.col("ui_n") > 0).cast(pl.Float64),
                0.0,
                "1 if the user interacted with the item before",
            ),
            Feature("ui_count", pl.col("ui_n"), 0.0, "how often the user interacted with the item"),
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
    half_life = config.affinity_half_life_days
    return FeatureView(
        name="user_category",
        entity=USER_CATEGORY,
        where=pl.col(CATEGORY).is_not_null(),
        aggregations=(
            deterministic_sum(DECAY).alias("uc_decay_sum"),
            pl.col(AS_OF).first().alias("uc_decay_ref_ts"),
        ),
        features=(
            Feature(
                "user_category_affinity",
                decayed("uc_decay_sum", "uc_decay_ref_ts", half_life)
                / decayed("user_decay_sum", "user_decay_ref_ts", half_life),
                0.0,
                f"recency-weighted share (half-life {half_life:g} days) of the user's events "
                "in the item's category",
            ),
        ),
        description="user taste for the candidate's category",
    )
