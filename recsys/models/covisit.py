"""Sequence co-visitation: items consumed close to the user's latest items.

The item-to-item table is :func:`feature_store.covisit.covisitation` (the definition the
``covisit_score`` ranking feature uses too), held as a sparse items x items matrix. A user's
scores are the table's rows of their last ``recent_items`` items, the latest weighted 1, the one
before 1/2, ...: one sparse product for a whole batch of users, the same code online and offline.
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


class CovisitScorer(Scorer):
    """Co-visitation weights from the user's recent items; items co-visited with none score ``-inf``."""

    kind = "covisit"

    def __init__(
        self,
        max_gap: int = DEFAULTS.covisit_max_gap,
        max_seconds: int = DEFAULTS.covisit_max_seconds,
        top_per_item: int = DEFAULTS.covisit_top_per_item,
        recent_items: int = DEFAULTS.recent_items,
    ) -> None:
        self.max_gap = max_gap
        self.max_seconds = max_seconds
        self.top_per_item = top_per_item
        self.recent_items = recent_items
        self.matrix: sp.csr_matrix | None = None

    @classmethod
    def from_config(cls, config: FeaturesConfig) -> CovisitScorer:
        return cls(
            config.covisit_max_gap,
            config.covisit_max_seconds,
            config.covisit_top_per_item,
            config.recent_items,
        )

    def fit(self, interactions: pl.DataFrame, catalog: ItemCatalog) -> Self:
        from feature_store.covisit import covisitation

        config = FeaturesConfig(
            covisit_max_gap=self.max_gap,
            covisit_max_seconds=self.max_seconds,
            covisit_top_per_item=self.top_per_item,
        )
        return self.from_table(covisitation(interactions, config), catalog)

    def from_table(self, table: pl.DataFrame, catalog: ItemCatalog) -> Self:
        """Use an already computed ``[item_id, other_item_id, weight]`` table."""
        indexed = catalog.with_index(table, "item_id", "src").pipe(catalog.with_index, "other_item_id", "dst")
        n_items = len(catalog)
        self.matrix = sp.csr_matrix(
            (
                indexed["weight"].cast(pl.Float64).to_numpy(),
                (indexed["src"].to_numpy(), indexed["dst"].to_numpy()),
            ),
            shape=(n_items, n_items),
        )
        self.n_items = n_items
        return self

    def _score(self, histories: Histories) -> np.ndarray:
        found = self._found(histories).tocoo()
        scores = np.full(found.shape, -np.inf, dtype=np.float32)
        scores[found.row, found.col] = found.data.astype(np.float32)
        return scores

    def _best_entries(self, histories: Histories, k: int, exclude_seen: bool) -> Entries:
        """The co-visited items themselves (a few hundred per user), never a users x items matrix."""
        found = self._found(histories).tocoo()
        entries = (found.row.astype(np.int64), found.col.astype(np.int64), found.data.astype(np.float32))
        return drop_seen(entries, histories.items, found.shape[1]) if exclude_seen else entries

    def _cells_per_user(self, histories: Histories, k: int) -> int:
        return self.recent_items * self.top_per_item

    def _found(self, histories: Histories) -> sp.csr_matrix:
        """Users x items sums of the co-visitation rows of each user's recent items (float64)."""
        assert self.matrix is not None
        recent = [items[-self.recent_items :] for items in histories.items]
        lengths = np.asarray([len(items) for items in recent], dtype=np.int64)
        from_end = np.concatenate([np.arange(n, 0, -1) for n in lengths] or [np.zeros(0, np.int64)])
        query = sp.csr_matrix(
            (
                1.0 / from_end,
                (
                    np.repeat(np.arange(len(recent)), lengths),
                    np.concatenate([*recent, np.zeros(0, np.int64)]),
                ),
            ),
            shape=(len(recent), self.matrix.shape[0]),
        )
        return sp.csr_matrix(query @ self.matrix)  # float64 sums, rounded to float32 once by callers

    def params(self) -> dict[str, Any]:
        return {
            "max_gap": self.max_gap,
            "max_seconds": self.max_seconds,
            "top_per_item": self.top_per_item,
            "recent_items": self.recent_items,
        }

    def _state(self) -> dict[str, np.ndarray]:
        assert self.matrix is not None
        return {"indptr": self.matrix.indptr, "indices": self.matrix.indices, "data": self.matrix.data}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        n_items = len(state["indptr"]) - 1
        self.matrix = sp.csr_matrix(
            (state["data"], state["indices"], state["indptr"]), shape=(n_items, n_items)
        )
