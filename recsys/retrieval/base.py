"""The candidate-source interface: every source turns user histories into scored candidates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.catalog import Histories

CANDIDATE_COLUMNS = {
    "user_id": pl.String(),
    "item_idx": pl.Int64(),
    "score": pl.Float32(),
    "rank": pl.Int32(),
}


@dataclass(frozen=True)
class Retrieved:
    """One source's top-k for a batch of users, best first: ``items`` (int64 catalog rows) and ``scores``
    (float32), both [users, k]; a slot with nothing in it holds item -1. An item's rank is its slot + 1."""

    items: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, users: int, k: int) -> Retrieved:
        return cls(np.full((users, k), -1, dtype=np.int64), np.full((users, k), -np.inf, dtype=np.float32))


class CandidateSource(ABC):
    """Top-k candidate items per user from the user's history alone.

    A source scores in one place, :meth:`retrieve` (arrays for a batch of users: the ranking path,
    batch and online alike); :meth:`candidates` is the same answer as a long frame. Items in the
    user's history are never returned when ``exclude_seen`` is true. Sources are fitted before the
    cutoff they serve and must not look at events after it.
    """

    name: str

    def __init__(self, exclude_seen: bool = True) -> None:
        self.exclude_seen = exclude_seen

    @abstractmethod
    def retrieve(self, histories: Histories, k: int, exclude_seen: bool | None = None) -> Retrieved:
        """Each user's ``k`` best items; ``exclude_seen`` overrides the source's setting for this call."""

    def candidates(self, histories: Histories, k: int) -> pl.DataFrame:
        """:meth:`retrieve` as a long frame with :data:`CANDIDATE_COLUMNS`: per user up to ``k`` rows,
        ``rank`` 1..k by descending ``score``."""
        found = self.retrieve(histories, k)
        keep = found.items >= 0
        user_rows, slots = np.nonzero(keep)
        return pl.DataFrame(
            {
                "user_id": np.asarray(histories.user_ids, dtype=object)[user_rows].tolist(),
                "item_idx": found.items[keep],
                "score": found.scores[keep],
                "rank": (slots + 1).astype(np.int32),
            },
            schema=CANDIDATE_COLUMNS,
        )
