"""The candidate-source interface: every source turns user histories into scored candidates."""

from __future__ import annotations

from abc import ABC, abstractmethod

import polars as pl

from recsys.catalog import Histories

CANDIDATE_COLUMNS = {
    "user_id": pl.String(),
    "item_idx": pl.Int64(),
    "score": pl.Float32(),
    "rank": pl.Int32(),
}


class CandidateSource(ABC):
    """Top-k candidate items per user from the user's history alone.

    ``candidates`` returns a long frame with :data:`CANDIDATE_COLUMNS`: for each user up to
    ``k`` rows, ``rank`` 1..k by descending ``score``. Items in the user's history are
    never returned when ``exclude_seen`` is true. Sources are fitted before the cutoff they
    serve and must not look at events after it.
    """

    name: str

    def __init__(self, exclude_seen: bool = True) -> None:
        self.exclude_seen = exclude_seen

    @abstractmethod
    def candidates(self, histories: Histories, k: int) -> pl.DataFrame: ...
