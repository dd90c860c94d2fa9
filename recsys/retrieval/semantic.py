"""Semantic candidates: the user's vector against the item-vector index, seen items excluded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from recsys.catalog import Histories
from recsys.index.base import ANNIndex
from recsys.retrieval.base import CANDIDATE_COLUMNS, CandidateSource

UserVectors = Callable[[Histories], np.ndarray]
"""Histories -> one vector per user (zeros where there is nothing to go on)."""


class SemanticSource(CandidateSource):
    """Top-k items by inner product with the user vector (history mean or encoded context).

    ``user_vectors`` is typically ``partial(user_vectors_from_history, item_vectors,
    half_life_events=...)`` or ``partial(user_vectors_from_context, model, items, ...)``.
    Users whose vector is zero (no history) get no candidates here; other sources cover them.
    With an ``allow`` list it searches only those items: ``cold_text`` searches the items with
    little or no history, which behavioural sources can hardly reach.
    """

    def __init__(
        self,
        index: ANNIndex,
        user_vectors: UserVectors,
        exclude_seen: bool = True,
        allow: np.ndarray | None = None,
        name: str = "semantic",
    ) -> None:
        """``allow``: the only item indices this source may return (``cold_text``: the cold items)."""
        super().__init__(exclude_seen)
        self.index = index
        self.user_vectors = user_vectors
        self.allow = allow
        self.name = name

    def candidates(self, histories: Histories, k: int) -> pl.DataFrame:
        vectors = self.user_vectors(histories)
        active = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
        exclude = [histories.items[i] for i in active] if self.exclude_seen else None
        scores, indices = self.index.search(vectors[active], k, exclude=exclude, allow=self.allow)
        found = indices >= 0
        users = np.asarray(histories.user_ids, dtype=object)[active]
        return pl.DataFrame(
            {
                "user_id": np.repeat(users, found.sum(axis=1)).tolist(),
                "item_idx": indices[found],
                "score": scores[found],
                "rank": np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), indices.shape)[found],
            },
            schema=CANDIDATE_COLUMNS,
        )
