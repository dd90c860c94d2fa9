"""Temporal splits only: the future is never used to predict the past."""

from __future__ import annotations

import polars as pl


def time_at_share(interactions: pl.DataFrame, share: float) -> int:
    """The timestamp after which the last ``share`` of the time range lies."""
    start, end = interactions["ts"].min(), interactions["ts"].max()
    assert isinstance(start, int) and isinstance(end, int)
    return int(end - (end - start) * share)


def global_split(interactions: pl.DataFrame, cutoff: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events strictly before ``cutoff`` / events at or after it."""
    return interactions.filter(pl.col("ts") < cutoff), interactions.filter(pl.col("ts") >= cutoff)


def per_user_split(
    interactions: pl.DataFrame, test_share: float = 0.2, min_events: int = 5
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each eligible user's last ``test_share`` of events (at least one) is test.

    Users with fewer than ``min_events`` events stay entirely in train. Ties in time are
    broken by the original row order, so the split is deterministic.
    """
    ranked = (
        interactions.with_row_index("_order")
        .sort("user_id", "ts", "_order")
        .with_columns(
            pl.int_range(pl.len()).over("user_id").alias("_pos"),
            pl.len().over("user_id").alias("_n"),
        )
    )
    n_test = (pl.col("_n").cast(pl.Float64) * test_share).ceil().cast(pl.Int64).clip(lower_bound=1)
    is_test = (pl.col("_n") >= min_events) & (pl.col("_pos") >= pl.col("_n") - n_test)
    ranked = ranked.with_columns(is_test.alias("_test")).sort("_order")
    helpers = ["_order", "_pos", "_n", "_test"]
    return (
        ranked.filter(~pl.col("_test")).drop(helpers),
        ranked.filter(pl.col("_test")).drop(helpers),
    )
