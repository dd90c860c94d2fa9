"""Most-popular items: the baseline every model has to beat, and a fallback for empty histories."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.models.base import Scorer

DAY = 86_400


class PopularityScorer(Scorer):
    """Every user gets the same scores: event counts per item.

    ``days=None`` counts all events; ``days=N`` counts the events of the last N days before
    the latest event seen in ``fit`` ("trending"). Ties, and items with no recent events,
    are ordered by all-time counts: the score is ``recent + all_time / (max_all_time + 1)``,
    so the fraction never overturns a difference in recent counts.
    """

    kind = "popularity"

    def __init__(self, days: int | None = None) -> None:
        if days is not None and days <= 0:
            raise ValueError(f"days must be positive or None, got {days}")
        self.days = days
        self.item_scores: np.ndarray | None = None

    def fit(self, interactions: pl.DataFrame, catalog: ItemCatalog) -> Self:
        frame = catalog.with_index(interactions.select("item_id", "ts"))
        all_time = np.bincount(frame["item_idx"].to_numpy(), minlength=len(catalog)).astype(np.float64)
        scores = all_time
        if self.days is not None and len(frame):
            since = int(frame["ts"].max()) - self.days * DAY  # type: ignore[arg-type]
            recent_idx = frame.filter(pl.col("ts") > since)["item_idx"].to_numpy()
            recent = np.bincount(recent_idx, minlength=len(catalog)).astype(np.float64)
            scores = recent + all_time / (all_time.max() + 1.0)
        self.item_scores = scores.astype(np.float32)
        self.n_items = len(catalog)
        return self

    def _score(self, histories: Histories) -> np.ndarray:
        assert self.item_scores is not None
        return np.broadcast_to(self.item_scores, (len(histories), len(self.item_scores)))

    def params(self) -> dict[str, Any]:
        return {"days": self.days}

    def _state(self) -> dict[str, np.ndarray]:
        assert self.item_scores is not None
        return {"item_scores": self.item_scores}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.item_scores = state["item_scores"]
