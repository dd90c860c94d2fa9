"""Sequence co-visitation: items consumed close to the user's latest items.

The item-to-item table is :func:`feature_store.covisit.covisitation` (the definition the
``covisit_score`` ranking feature uses too), held as a sparse items x items matrix. A user's
scores are the table's rows of their last ``recent_items`` items, the latest weighted 1, the one
before 1/2, ...: one sparse product for a whole batch of users, the same code online and offline.
"""

from __future__ import annotations

from typing import Any, Self

import polars as pl
import scipy.sparse as sp

from recsys.catalog import Histories, ItemCatalog
from recsys.config import FeaturesConfig
from recsys.models.item_to_item import ItemToItemScorer

DEFAULTS = FeaturesConfig()


class CovisitScorer(ItemToItemScorer):
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
        self._set_matrix(
            indexed["src"].to_numpy(),
            indexed["dst"].to_numpy(),
            indexed["weight"].cast(pl.Float64).to_numpy(),
            catalog,
        )
        return self

    def _cells_per_user(self, histories: Histories, k: int) -> int:
        return self.recent_items * self.top_per_item

    def _found(self, histories: Histories) -> sp.csr_matrix:
        """Sums of the co-visitation rows of each user's recent items."""
        assert self.matrix is not None
        return sp.csr_matrix(self._recent_query(histories) @ self.matrix)

    def params(self) -> dict[str, Any]:
        return {
            "max_gap": self.max_gap,
            "max_seconds": self.max_seconds,
            "top_per_item": self.top_per_item,
            "recent_items": self.recent_items,
        }
