"""Blend candidate sources: the union per user, each source's rank and score kept as features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from recsys.catalog import Histories
from recsys.retrieval.base import CandidateSource


def source_columns(names: Sequence[str]) -> list[str]:
    """Feature columns the blend adds: ``cand_<source>_score`` and ``cand_<source>_rank`` per source."""
    return [f"cand_{name}_{kind}" for name in names for kind in ("score", "rank")]


def blend(
    sources: Sequence[CandidateSource],
    histories: Histories,
    per_source_k: int,
    total_k: int,
    allowed: np.ndarray | None = None,
) -> pl.DataFrame:
    """Union of every source's top ``per_source_k``, at most ``total_k`` per user.

    When a user has more, candidates are kept by their best rank in any source, so every
    source contributes its head. ``allowed`` is a boolean mask over the catalog (metadata
    filters). A missing score/rank (the item did not come from that source) is null.
    Columns: user_id, item_idx, sources (list of names), and :func:`source_columns`.
    """
    merged: pl.DataFrame | None = None
    allowed_idx = None if allowed is None else pl.Series(np.flatnonzero(allowed))
    for source in sources:
        frame = source.candidates(histories, per_source_k)
        if allowed_idx is not None:
            frame = frame.filter(pl.col("item_idx").is_in(allowed_idx.implode()))
        frame = frame.rename({"score": f"cand_{source.name}_score", "rank": f"cand_{source.name}_rank"})
        merged = (
            frame
            if merged is None
            else merged.join(frame, on=["user_id", "item_idx"], how="full", coalesce=True)
        )
    assert merged is not None, "at least one candidate source is required"
    rank_columns = [f"cand_{source.name}_rank" for source in sources]
    names = [source.name for source in sources]
    return (
        merged.with_columns(
            pl.min_horizontal(rank_columns).alias("_best"),
            pl.concat_list(
                [pl.when(pl.col(f"cand_{name}_rank").is_not_null()).then(pl.lit(name)) for name in names]
            )
            .list.drop_nulls()
            .alias("sources"),
        )
        .sort(["user_id", "_best", "item_idx"])
        .with_columns(pl.int_range(pl.len()).over("user_id").alias("_n"))
        .filter(pl.col("_n") < total_k)
        .drop("_best", "_n")
    )
