"""Sequence transitions: where users go next from the item they consumed last, a few steps ahead.

Co-visitation sums neighbours in both directions of the user's recent items; this follows the
log's forward transitions (item consumed, then the next event of the same user within
``max_seconds``) from the latest items only, and walks them ``steps`` times: the chance of
reaching each item after one, two, ... steps, summed. Catalogs where consumption runs in chains
(episodes, sequels, the next part of a guide) put the next several items of a chain within reach,
where a one-step table sees only the first.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.catalog import Histories, ItemCatalog
from recsys.config import FeaturesConfig
from recsys.models.item_to_item import ItemToItemScorer

DEFAULTS = FeaturesConfig()


class MarkovScorer(ItemToItemScorer):
    """Summed ``steps``-step transition probabilities from the user's last ``recent_items`` items
    (the latest weighted 1, the one before 1/2, ...); items reached by none score ``-inf``."""

    kind = "markov"

    def __init__(
        self,
        steps: int = 4,
        recent_items: int = 1,
        max_seconds: int = DEFAULTS.covisit_max_seconds,
        top_per_item: int = DEFAULTS.covisit_top_per_item,
        beam: int = 500,
    ) -> None:
        self.steps = steps
        self.recent_items = recent_items
        self.max_seconds = max_seconds
        self.top_per_item = top_per_item
        self.beam = beam

    def fit(self, interactions: pl.DataFrame, catalog: ItemCatalog) -> Self:
        """Row-normalized counts of (item, next item of the same user), the ``top_per_item`` most
        frequent per item (ties: smaller index)."""
        events = catalog.with_index(interactions.select("user_id", "item_id", "ts")).sort(
            "user_id", "ts", "item_idx"
        )
        pairs = (
            events.select(
                pl.col("item_idx").alias("src"),
                pl.col("item_idx").shift(-1).alias("dst"),
                (
                    (pl.col("user_id").shift(-1) == pl.col("user_id"))
                    & (pl.col("ts").shift(-1) - pl.col("ts") <= self.max_seconds)
                ).alias("close"),
            )
            .filter(pl.col("close") & (pl.col("src") != pl.col("dst")))
            .group_by("src", "dst")
            .agg(pl.len().alias("count"))
            .sort(["src", "count", "dst"], descending=[False, True, False])
            .filter(pl.int_range(pl.len()).over("src") < self.top_per_item)
            .with_columns((pl.col("count") / pl.col("count").sum().over("src")).alias("p"))
        )
        self._set_matrix(pairs["src"].to_numpy(), pairs["dst"].to_numpy(), pairs["p"].to_numpy(), catalog)
        return self

    def _found(self, histories: Histories) -> sp.csr_matrix:
        """Transition probabilities summed over 1..``steps`` steps."""
        assert self.matrix is not None
        state = self._recent_query(histories)
        total = sp.csr_matrix(state.shape, dtype=np.float64)
        for _ in range(self.steps):
            state = _prune(sp.csr_matrix(state @ self.matrix), self.beam)
            total = total + state
        return sp.csr_matrix(total)

    def _cells_per_user(self, histories: Histories, k: int) -> int:
        """A step's product before pruning: ``beam`` states times each item's ``top_per_item`` next items."""
        return self.beam * self.top_per_item

    def params(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "recent_items": self.recent_items,
            "max_seconds": self.max_seconds,
            "top_per_item": self.top_per_item,
            "beam": self.beam,
        }


def _prune(matrix: sp.csr_matrix, beam: int) -> sp.csr_matrix:
    """Each row's ``beam`` largest entries (ties: smaller column), so a walk's cost stays bounded."""
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= beam:
        return matrix
    coo = matrix.tocoo()
    order = np.lexsort((coo.col, -coo.data, coo.row))
    rows, cols, data = coo.row[order], coo.col[order], coo.data[order]
    place = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = place < beam
    return sp.csr_matrix((data[keep], (rows[keep], cols[keep])), shape=matrix.shape)
