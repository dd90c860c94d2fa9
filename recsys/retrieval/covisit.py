"""Co-visitation candidates: items consumed close to the user's latest items.

The item-to-item table comes from :func:`feature_store.covisit.covisitation` (the same
definition the ranking feature uses); this source queries it with the user's last
``recent_items`` items, the most recent weighted highest (1 / position from the end).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.retrieval.base import CANDIDATE_COLUMNS, CandidateSource


class CovisitSource(CandidateSource):
    name = "covisit"

    def __init__(
        self, table: pl.DataFrame, catalog: ItemCatalog, recent_items: int = 20, exclude_seen: bool = True
    ) -> None:
        super().__init__(exclude_seen)
        indexed = catalog.with_index(table, "item_id", "src").pipe(catalog.with_index, "other_item_id", "dst")
        self.neighbours = indexed.select("src", "dst", pl.col("weight").cast(pl.Float64))
        self.recent_items = recent_items

    def candidates(self, histories: Histories, k: int) -> pl.DataFrame:
        recent = [items[-self.recent_items :] for items in histories.items]
        lengths = np.asarray([len(items) for items in recent], dtype=np.int64)
        if lengths.sum() == 0:
            return pl.DataFrame(schema=CANDIDATE_COLUMNS)
        user_ids = np.repeat(np.asarray(histories.user_ids, dtype=object), lengths)
        # 1 for the latest item, 1/2 for the one before, ...
        from_end = np.concatenate([np.arange(n, 0, -1) for n in lengths if n])
        queries = pl.DataFrame(
            {
                "user_id": user_ids.tolist(),
                "src": np.concatenate([items for items in recent if len(items)]),
                "decay": 1.0 / from_end,
            }
        )
        scored = (
            queries.join(self.neighbours, on="src", how="inner")
            .group_by("user_id", "dst")
            # float64 sums, rounded to float32: the same scores (and ranks) whatever the summation order
            .agg((pl.col("weight").cast(pl.Float64) * pl.col("decay")).sum().cast(pl.Float32).alias("score"))
            .rename({"dst": "item_idx"})
        )
        if self.exclude_seen:
            seen = pl.DataFrame(
                {
                    "user_id": np.repeat(
                        np.asarray(histories.user_ids, dtype=object), [len(h) for h in histories.items]
                    ).tolist(),
                    "item_idx": np.concatenate([*histories.items, np.zeros(0, dtype=np.int64)]),
                }
            )
            scored = scored.join(seen, on=["user_id", "item_idx"], how="anti")
        return (
            scored.sort(["user_id", "score", "item_idx"], descending=[False, True, False])
            .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").alias("rank"))
            .filter(pl.col("rank") <= k)
            .select([pl.col(name).cast(dtype) for name, dtype in CANDIDATE_COLUMNS.items()])
        )
