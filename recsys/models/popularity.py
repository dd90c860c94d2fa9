"""Most-popular items: the baseline every model has to beat, and a fallback for empty histories."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Self

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.models.base import Scorer
from recsys.models.top_k import Entries, history_cells

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
        self.__dict__.pop("_ranking", None)
        self.n_items = len(catalog)
        return self

    def _score(self, histories: Histories) -> np.ndarray:
        assert self.item_scores is not None
        return np.broadcast_to(self.item_scores, (len(histories), len(self.item_scores)))

    def _best_entries(self, histories: Histories, k: int, exclude_seen: bool) -> Entries:
        """The head of the one ranking everyone shares, less each user's seen items: no users x
        items matrix, whatever the catalog."""
        assert self.item_scores is not None
        ranking, place = self._ranking
        head = ranking[: self._cells_per_user(histories, k)]
        keep = np.ones((len(histories), len(head)), dtype=bool)
        if exclude_seen:
            rows, seen = history_cells(histories.items)
            places = place[seen]
            inside = places < len(head)
            keep[rows[inside], places[inside]] = False
        keep &= np.cumsum(keep, axis=1, dtype=np.int32) <= k
        rows, columns = np.nonzero(keep)
        return rows, head[columns], self.item_scores[head[columns]]

    def _cells_per_user(self, histories: Histories, k: int) -> int:
        return k + max((len(items) for items in histories.items), default=0)

    @cached_property
    def _ranking(self) -> tuple[np.ndarray, np.ndarray]:
        """(items with a finite score, best first, ties to the smaller index; each item's place in
        that ranking, ``n_items`` for the others)."""
        assert self.item_scores is not None
        scores = self.item_scores
        ranking = np.lexsort((np.arange(len(scores)), -scores))
        ranking = ranking[scores[ranking] > -np.inf]
        place = np.full(len(scores), len(scores), dtype=np.int64)
        place[ranking] = np.arange(len(ranking))
        return ranking, place

    def params(self) -> dict[str, Any]:
        return {"days": self.days}

    def _state(self) -> dict[str, np.ndarray]:
        assert self.item_scores is not None
        return {"item_scores": self.item_scores}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.item_scores = state["item_scores"]
        self.__dict__.pop("_ranking", None)
