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
from recsys.models.base import Scorer
from recsys.models.top_k import Entries, drop_seen

DEFAULTS = FeaturesConfig()


class MarkovScorer(Scorer):
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
        self.matrix: sp.csr_matrix | None = None

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
        n_items = len(catalog)
        self.matrix = sp.csr_matrix(
            (pairs["p"].to_numpy(), (pairs["src"].to_numpy(), pairs["dst"].to_numpy())),
            shape=(n_items, n_items),
        )
        self.n_items = n_items
        return self

    def _walk(self, histories: Histories) -> sp.csr_matrix:
        """Users x items: transition probabilities summed over 1..``steps`` steps (float64)."""
        assert self.matrix is not None
        recent = [items[-self.recent_items :] for items in histories.items]
        lengths = np.asarray([len(items) for items in recent], dtype=np.int64)
        from_end = np.concatenate([np.arange(n, 0, -1) for n in lengths] or [np.zeros(0, np.int64)])
        state = sp.csr_matrix(
            (
                1.0 / from_end,
                (
                    np.repeat(np.arange(len(recent)), lengths),
                    np.concatenate([*recent, np.zeros(0, np.int64)]),
                ),
            ),
            shape=(len(recent), self.matrix.shape[0]),
        )
        total = sp.csr_matrix(state.shape, dtype=np.float64)
        for _ in range(self.steps):
            state = _prune(sp.csr_matrix(state @ self.matrix), self.beam)
            total = total + state
        return sp.csr_matrix(total)

    def _score(self, histories: Histories) -> np.ndarray:
        found = self._walk(histories).tocoo()
        scores = np.full(found.shape, -np.inf, dtype=np.float32)
        scores[found.row, found.col] = found.data.astype(np.float32)
        return scores

    def _best_entries(self, histories: Histories, k: int, exclude_seen: bool) -> Entries:
        found = self._walk(histories).tocoo()
        entries = (found.row.astype(np.int64), found.col.astype(np.int64), found.data.astype(np.float32))
        return drop_seen(entries, histories.items, found.shape[1]) if exclude_seen else entries

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

    def _state(self) -> dict[str, np.ndarray]:
        assert self.matrix is not None
        return {"indptr": self.matrix.indptr, "indices": self.matrix.indices, "data": self.matrix.data}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        n_items = len(state["indptr"]) - 1
        self.matrix = sp.csr_matrix(
            (state["data"], state["indices"], state["indptr"]), shape=(n_items, n_items)
        )


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
