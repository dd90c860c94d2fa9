"""Item ids <-> dense indices, and user histories as index arrays.

Every model, index and candidate source works on dense item indices 0..n-1 in catalog
order (the order of the validated items table); ids appear only at the edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class ItemCatalog:
    ids: np.ndarray
    """Item ids (object array of str) in index order."""

    @classmethod
    def from_items(cls, items: pl.DataFrame) -> ItemCatalog:
        return cls(np.asarray(items["item_id"].to_list(), dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def _lookup(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {item_id: i for i, item_id in enumerate(self.ids)}
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def index(self, item_id: str) -> int | None:
        return self._lookup.get(item_id)

    def indices(self, item_ids: Iterable[str]) -> np.ndarray:
        """Indices of known ids; unknown ids are dropped."""
        lookup = self._lookup
        return np.asarray([lookup[i] for i in item_ids if i in lookup], dtype=np.int64)

    def with_index(
        self, frame: pl.DataFrame, column: str = "item_id", name: str = "item_idx"
    ) -> pl.DataFrame:
        """Add the dense index of ``column`` (inner join: rows with unknown ids are dropped)."""
        mapping = pl.DataFrame({column: self.ids.tolist(), name: np.arange(len(self.ids), dtype=np.int64)})
        return frame.join(mapping, on=column, how="inner")


@dataclass(frozen=True)
class Histories:
    """Each user's past items (dense indices), oldest first, with timestamps."""

    user_ids: list[str]
    items: list[np.ndarray]
    timestamps: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.user_ids)

    def slice(self, start: int, stop: int) -> Histories:
        """Users ``start..stop-1`` (the arrays are shared, not copied)."""
        return Histories(self.user_ids[start:stop], self.items[start:stop], self.timestamps[start:stop])

    def take(self, rows: Sequence[int]) -> Histories:
        """The users at ``rows``, in that order (the arrays are shared, not copied)."""
        user_ids = [self.user_ids[r] for r in rows]
        return Histories(user_ids, [self.items[r] for r in rows], [self.timestamps[r] for r in rows])

    def chunks(self, size: int) -> Iterator[Histories]:
        """Consecutive slices of at most ``size`` users: batch work whose memory the chunk bounds."""
        for start in range(0, len(self), size):
            yield self.slice(start, start + size)

    @classmethod
    def from_interactions(
        cls, interactions: pl.DataFrame, catalog: ItemCatalog, users: Sequence[str] | None = None
    ) -> Histories:
        """Histories of ``users`` (default: all in ``interactions``); users without events get empty ones."""
        frame = catalog.with_index(interactions.select("user_id", "item_id", "ts"))
        grouped = (
            frame.sort("ts", maintain_order=True)
            .group_by("user_id", maintain_order=True)
            .agg(pl.col("item_idx"), pl.col("ts"))
        )
        by_user = {
            row[0]: (np.asarray(row[1], dtype=np.int64), np.asarray(row[2], dtype=np.int64))
            for row in grouped.iter_rows()
        }
        order = list(by_user) if users is None else list(users)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        pairs = [by_user.get(user, empty) for user in order]
        return cls(order, [p[0] for p in pairs], [p[1] for p in pairs])
