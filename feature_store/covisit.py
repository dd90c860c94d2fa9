"""Sequence co-visitation: items consumed within a few steps of each other by the same user.

The item-to-item table is reusable (the co-visitation candidate source builds on
:func:`covisitation`); the ``covisit_score`` feature sums the table's weights between a
candidate and the user's last ``recent_items`` events. Online, the user's history moves
with every live event while the table itself is refreshed only by the nightly push.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from feature_store.definitions import ITEM_ID, TS, USER_ID, USER_ITEM, Feature, FeatureView
from feature_store.read_out import col
from recsys.config import FeaturesConfig

OTHER_ITEM_ID = "other_item_id"
WEIGHT = "weight"
SEQUENCE_ORDER = [USER_ID, TS, ITEM_ID]
"""A user's events in time order; same-second events are ordered by item id so every path agrees."""
PAIR_KEY = 1 << 32
"""An (item, other) pair of 32-bit codes as one 64-bit key: item * PAIR_KEY + other."""
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


def _directed_pairs(events: pl.LazyFrame, config: FeaturesConfig) -> pl.LazyFrame:
    """``[item_id, other_item_id, weight (integer units), ts]``: every pair within the gap limits, both
    directions; ``ts`` is the later event's, from which on the pair exists."""
    sequence = events.select(USER_ID, ITEM_ID, TS).sort(SEQUENCE_ORDER)
    directed = []
    for steps in range(1, config.covisit_max_gap + 1):
        pairs = sequence.select(
            pl.col(ITEM_ID).shift(steps).alias("earlier"),
            pl.col(ITEM_ID).alias("later"),
            pl.col(TS),
            (
                (pl.col(USER_ID).shift(steps) == pl.col(USER_ID))
                & (pl.col(TS) - pl.col(TS).shift(steps) <= config.covisit_max_seconds)
            ).alias("close"),
        ).filter(pl.col("close") & (pl.col("earlier") != pl.col("later")))
        weight = pl.lit(WEIGHT_UNIT // steps, pl.Int64).alias(WEIGHT)
        for item, other in (("earlier", "later"), ("later", "earlier")):
            directed.append(
                pairs.select(pl.col(item).alias(ITEM_ID), pl.col(other).alias(OTHER_ITEM_ID), weight, TS)
            )
    return pl.concat(directed)


def _heaviest(
    totals: pl.LazyFrame, top_per_item: int, item: str = ITEM_ID, other: str = OTHER_ITEM_ID
) -> pl.LazyFrame:
    """Of ``[item, other, weight]`` totals, the ``top_per_item`` heaviest per item (ties: smaller other),
    sorted by item, weight (heaviest first), other: a top-k per item, not a sort of every total."""
    by, reverse = [WEIGHT, other], [False, True]
    return (
        totals.group_by(item)
        .agg(
            pl.col(other).top_k_by(by, top_per_item, reverse=reverse),
            pl.col(WEIGHT).top_k_by(by, top_per_item, reverse=reverse),
        )
        .explode(other, WEIGHT)
        .sort([item, WEIGHT, other], descending=[False, True, False])
    )


def covisitation_lazy(
    events: pl.LazyFrame, config: FeaturesConfig, sources: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """:func:`covisitation` as a lazy plan; ``sources`` (an ``item_id`` frame) keeps only their rows."""
    table = _directed_pairs(events, config).drop(TS)
    if sources is not None:
        table = table.join(sources.select(ITEM_ID).unique(), on=ITEM_ID, how="semi")
    totals = table.group_by(ITEM_ID, OTHER_ITEM_ID).agg(pl.col(WEIGHT).sum())
    return _heaviest(totals, config.covisit_top_per_item).with_columns(pl.col(WEIGHT) / WEIGHT_UNIT)


@dataclass(frozen=True)
class CovisitPairs:
    """Every directed pair of an event log, found once, on integer item codes: the table as of any
    moment is then a filter and a sum (:meth:`table`) instead of a sort of the whole log per moment.

    Exact: a user's events before a moment are a prefix of their sequence, so the pairs of the log cut
    at ``m`` are the pairs of the whole log whose later event is before ``m``. Codes follow the ids'
    sorted order, so ties break as :func:`covisitation_lazy` breaks them (smaller other id first).
    """

    item_ids: pl.Series
    """Item id of each code."""
    pairs: pl.DataFrame
    """``[item, other, weight, ts]``: codes, integer weight units, the later event's ts."""
    top_per_item: int

    @classmethod
    def of(cls, events: pl.DataFrame, config: FeaturesConfig) -> CovisitPairs:
        item_ids = events[ITEM_ID].cast(pl.String).unique().sort()
        coded = events.lazy().select(
            USER_ID, pl.col(ITEM_ID).cast(pl.String).cast(pl.Enum(item_ids)).to_physical(), TS
        )
        pairs = (
            _directed_pairs(coded, config)
            .select(
                pl.col(ITEM_ID).alias("item"),
                pl.col(OTHER_ITEM_ID).alias("other"),
                pl.col(WEIGHT).cast(pl.Int32),
                pl.col(TS),
            )
            .collect()
        )
        return cls(item_ids, pairs, config.covisit_top_per_item)

    def table(self, moment: int, sources: pl.Series | None = None) -> pl.DataFrame:
        """:func:`covisitation_lazy` of the events before ``moment`` (rows of ``sources`` item ids only)."""
        pairs = self.pairs.lazy().filter(pl.col(TS) < moment)
        if sources is not None:
            wanted = sources.cast(pl.String).cast(pl.Enum(self.item_ids), strict=False).drop_nulls()
            pairs = pairs.filter(pl.col("item").is_in(wanted.to_physical().unique().implode()))
        # one 64-bit key per (item, other) pair: a hash group-by on one column, not two
        totals = (
            pairs.group_by((pl.col("item").cast(pl.UInt64) * PAIR_KEY + pl.col("other")).alias("pair"))
            .agg(pl.col(WEIGHT).cast(pl.Int64).sum())
            .select(
                (pl.col("pair") // PAIR_KEY).cast(pl.UInt32).alias("item"),
                (pl.col("pair") % PAIR_KEY).cast(pl.UInt32).alias("other"),
                WEIGHT,
            )
        )
        heaviest = _heaviest(totals, self.top_per_item, "item", "other")
        found = heaviest.collect()
        return pl.DataFrame(
            [
                self.item_ids.gather(found["item"]).alias(ITEM_ID),
                self.item_ids.gather(found["other"]).alias(OTHER_ITEM_ID),
                (found[WEIGHT] / WEIGHT_UNIT).alias(WEIGHT),
            ]
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
