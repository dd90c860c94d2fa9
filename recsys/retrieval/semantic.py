"""Semantic candidates: the user's vector against the item-vector index, seen items excluded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.catalog import Histories
from recsys.index.base import ANNIndex
from recsys.retrieval.base import CandidateSource, Retrieved

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

    def retrieve(self, histories: Histories, k: int, exclude_seen: bool | None = None) -> Retrieved:
        exclude_seen = self.exclude_seen if exclude_seen is None else exclude_seen
        vectors = self.user_vectors(histories)
        active = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
        found = Retrieved.empty(len(histories), k)
        if not len(active):
            return found
        exclude = [histories.items[i] for i in active] if exclude_seen else None
        scores, indices = self.index.search(vectors[active], k, exclude=exclude, allow=self.allow)
        width = indices.shape[1]
        found.items[active, :width], found.scores[active, :width] = indices, scores
        return found
