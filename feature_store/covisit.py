"""Sequence co-visitation: items consumed within a few steps of each other by the same user.

The item-to-item table is reusable (the co-visitation candidate source builds on
:func:`covisitation`); the ``covisit_score`` feature sums the table's weights between a
candidate and the user's last ``recent_items`` events. Online, the user's history moves
with every live event while the table itself is refreshed only by the nightly push.
"""

from __future__ import annotations

import polars as pl

from feature_store.definitions import ITEM_ID, TS, USER_ID, USER_ITEM, Feature, FeatureView
from feature_store.read_out import col
from recsys.config import FeaturesConfig

OTHER_ITEM_ID = "other_item_id"
WEIGHT = "weight"
SEQUENCE_ORDER = [USER_ID, TS, ITEM_ID]
"""A user's events in time order; same-second events are ordered by item id so every path agrees."""
WEIGHT_UNIT = 2520
"""Weights are multiples of 1/2520 (the lcm of 1..10 steps) and are summed as integers, so
totals do not depend on summation order: polars in parallel, numpy online, every run alike."""


def covisitation(interactions: pl.DataFrame | pl.LazyFrame, config: FeaturesConfig) -> pl.DataFrame:
    """``[item_id, other_item_id, weight]``: pairs within ``covisit_max_gap`` steps and
    ``covisit_max_seconds`` in a user's sequence, both directions, weight summed over 1/steps,
    the ``covisit_top_per_item`` heaviest per item (ties: smaller other_item_id first).

    >>> events = pl.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "ts": [1, 2, 3]})
    >>> covisitation(events, FeaturesConfig(covisit_max_gap=1)).rows()
    [('a', 'b', 1.0), ('b', 'a', 1.0), ('b', 'c', 1.0), ('c', 'b', 1.0)]
    """
    return covisitation_lazy(interactions.lazy(), config).collect()


def covisitation_lazy(
    events: pl.LazyFrame, config: FeaturesConfig, sources: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """:func:`covisitation` as a lazy plan; ``sources`` (an ``item_id`` frame) keeps only their rows."""
    sequence = events.select(USER_ID, ITEM_ID, TS).sort(SEQUENCE_ORDER)
    directed = []
    for steps in range(1, config.covisit_max_gap + 1):
        pairs = sequence.select(
            pl.col(ITEM_ID).shift(steps).alias("earlier"),
            pl.col(ITEM_ID).alias("later"),
            (
                (pl.col(USER_ID).shift(steps) == pl.col(USER_ID))
                & (pl.col(TS) - pl.col(TS).shift(steps) <= config.covisit_max_seconds)
            ).alias("close"),
        ).filter(pl.col("close") & (pl.col("earlier") != pl.col("later")))
        weight = pl.lit(WEIGHT_UNIT // steps, pl.Int64).alias(WEIGHT)
        directed.append(
            pairs.select(pl.col("earlier").alias(ITEM_ID), pl.col("later").alias(OTHER_ITEM_ID), weight)
        )
        directed.append(
            pairs.select(pl.col("later").alias(ITEM_ID), pl.col("earlier").alias(OTHER_ITEM_ID), weight)
        )
    table = pl.concat(directed)
    if sources is not None:
        table = table.join(sources.select(ITEM_ID).unique(), on=ITEM_ID, how="semi")
    return (
        table.group_by(ITEM_ID, OTHER_ITEM_ID)
        .agg(pl.col(WEIGHT).sum())
        .sort([ITEM_ID, WEIGHT, OTHER_ITEM_ID], descending=[False, True, False])
        .filter(pl.int_range(pl.len()).over(ITEM_ID) < config.covisit_top_per_item)
        .with_columns(pl.col(WEIGHT) / WEIGHT_UNIT)
    )


def weight_units(weight: pl.Expr) -> pl.Expr:
    """Table weights back in exact integer units (see :data:`WEIGHT_UNIT`)."""
    return (weight * WEIGHT_UNIT).round().cast(pl.Int64)


def user_history(events: pl.LazyFrame, recent_items: int, per: tuple[str, ...] = (USER_ID,)) -> pl.LazyFrame:
    """``[*per, item_id, ts]``: the last ``recent_items`` events of each ``per`` group (a user, or a user
    at one of their moments), oldest first."""
    return (
        events.select(*per, ITEM_ID, TS)
        .sort([*per, TS, ITEM_ID])
        .filter(pl.int_range(pl.len()).over(per) >= pl.len().over(per).cast(pl.Int64) - recent_items)
    )


def covisit_scores(
    history: pl.LazyFrame, table: pl.LazyFrame, per: tuple[str, ...] = (USER_ID,)
) -> pl.LazyFrame:
    """``[*per, item_id, covisit_weight_sum]``: table weights from history events to each item, summed
    per ``per`` group (a user, or a user at one of their moments)."""
    return (
        history.select(*per, ITEM_ID)
        .join(table, on=ITEM_ID)
        .group_by(*per, OTHER_ITEM_ID)
        .agg((weight_units(pl.col(WEIGHT)).sum() / WEIGHT_UNIT).alias("covisit_weight_sum"))
        .rename({OTHER_ITEM_ID: ITEM_ID})
    )


def covisit_view() -> FeatureView:
    return FeatureView(
        name="covisit",
        entity=USER_ITEM,
        source="covisit",
        aggregations=(),
        features=(
            Feature(
                "covisit_score",
                col("covisit_weight_sum"),
                0.0,
                "co-visitation weight between the candidate and the user's recent items",
            ),
        ),
        description="sequence co-visitation with the user's latest items",
    )
