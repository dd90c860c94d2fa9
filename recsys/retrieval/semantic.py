"""Semantic candidates: the user's vector against the item-vector index, seen items excluded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.catalog import Histories
from recsys.index.base import ANNIndex
from recsys.retrieval.base import CandidateSource, Retrieved

UserVectors = Callable[[Histories], np.ndarray]
"""Histories -> one vector per user (zeros where there is nothing to go on)."""
RESCORE_MARGIN = 16
"""Extra items asked of the index per user before exact rescoring cuts the list to k."""
RESCORE_BLOCK = 64
"""Users rescored at once: their gathered item vectors stay small (cache-sized), whatever the batch."""


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
        item_vectors: np.ndarray | None = None,
    ) -> None:
        """``allow``: the only item indices this source may return (``cold_text``: the cold items).

        ``item_vectors`` (the index's rows): the items found are rescored one user at a time, so a
        user gets the same scores and order alone (a request) as in a batch (see :meth:`retrieve`).
        """
        super().__init__(exclude_seen)
        self.index = index
        self.user_vectors = user_vectors
        self.allow = allow
        self.name = name
        self.item_vectors = item_vectors

    def retrieve(self, histories: Histories, k: int, exclude_seen: bool | None = None) -> Retrieved:
        exclude_seen = self.exclude_seen if exclude_seen is None else exclude_seen
        vectors = self.user_vectors(histories)
        active = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
        found = Retrieved.empty(len(histories), k)
        if not len(active):
            return found
        exclude = [histories.items[i] for i in active] if exclude_seen else None
        wanted = k if self.item_vectors is None else k + RESCORE_MARGIN
        scores, indices = self.index.search(vectors[active], wanted, exclude=exclude, allow=self.allow)
        if self.item_vectors is not None:
            scores, indices = rescored(vectors[active], indices, self.item_vectors, k)
        width = indices.shape[1]
        found.items[active, :width], found.scores[active, :width] = indices, scores
        return found


def rescored(
    queries: np.ndarray, indices: np.ndarray, item_vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``indices`` (-1: none) by inner products computed row by row, best first
    (ties: smaller index).

    An index scores a batch of queries with one matrix product (BLAS), one query with a vector
    product: the last bits differ, and near-ties swap between a batch job and a request. Each
    product here is one einsum row, whose sum runs the same way whatever the batch holds; users go in
    blocks of :data:`RESCORE_BLOCK`, so the gathered vectors never grow with the batch.
    """
    if len(queries) > RESCORE_BLOCK:
        blocks = [
            rescored(
                queries[start : start + RESCORE_BLOCK],
                indices[start : start + RESCORE_BLOCK],
                item_vectors,
                k,
            )
            for start in range(0, len(queries), RESCORE_BLOCK)
        ]
        return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])
    found = indices >= 0
    safe = np.where(found, indices, 0)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    exact = np.einsum("nkd,nd->nk", item_vectors[safe], queries)
    exact = np.where(found, exact, -np.inf).astype(np.float32)
    order = np.lexsort((np.where(found, indices, np.iinfo(np.int64).max), -exact), axis=1)[:, :k]
    return np.take_along_axis(exact, order, axis=1), np.take_along_axis(indices, order, axis=1)
