"""Feature-store providers for the ranker: offline (event log, point-in-time) and online (store)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recsys.config import FeaturesConfig


@dataclass
class OfflineBehaviour:
    """Features of (user, item, ts) rows computed from ``interactions`` strictly before each ts."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    config: FeaturesConfig

    def names(self) -> list[str]:
        from feature_store.definitions import feature_columns
        from feature_store.repository import default_feature_set

        return feature_columns(default_feature_set(self.config))

    def features(self, rows: pl.DataFrame) -> pl.DataFrame:
        from feature_store.offline import training_frame

        return training_frame(rows, self.interactions, self.items, self.config)
