"""Item-based nearest neighbours: cosine similarity of item columns, top neighbours per item."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.catalog import Histories, ItemCatalog
from recsys.models.base import Scorer, history_matrix, interaction_matrix

BLOCK_CELLS = 20_000_000
"""Dense similarity cells computed at once (80 MB of float32): bounds memory on large catalogs."""


class ItemKNNScorer(Scorer):
    """``score(u, j) = sum over history items i of sim(i, j)``, keeping each item's top ``neighbors``.

    ``sim(i, j) = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrink)`` on binary user sets; the
    shrink term damps similarities supported by few users. Defaults (``neighbors=50``,
    ``shrink=10``): on the dev dataset (per-user split) NDCG@10 is 0.125 for 20-50 neighbours
    with shrink 10, 0.119 at 100 and 0.117 at 200.
    """

    kind = "itemknn"

    def __init__(self, neighbors: int = 50, shrink: float = 10.0) -> None:
        if neighbors <= 0 or shrink < 0:
            raise ValueError(f"neighbors must be positive and shrink >= 0, got {neighbors}, {shrink}")
        self.neighbors = neighbors
        self.shrink = shrink
        self.similarity: sp.csr_matrix | None = None

    def fit(self, interactions: pl.DataFrame, catalog: ItemCatalog) -> Self:
        matrix = interaction_matrix(interactions, catalog)
        n_items = len(catalog)
        item_users = matrix.T.tocsr()
        norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel()).astype(np.float32)
        keep = min(self.neighbors, max(n_items - 1, 1))
        block = max(1, BLOCK_CELLS // max(n_items, 1))
        rows, cols, vals = [], [], []
        for start in range(0, n_items, block):
            stop = min(start + block, n_items)
            overlap = (item_users[start:stop] @ matrix).toarray()
            sim = overlap / (norms[start:stop, None] * norms[None, :] + self.shrink + 1e-12)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
            top = np.argpartition(-sim, keep - 1, axis=1)[:, :keep] if keep < n_items else np.argsort(-sim)
            top_vals = np.take_along_axis(sim, top, axis=1)
            nonzero = top_vals > 0
            rows.append(np.nonzero(nonzero)[0] + start)
            cols.append(top[nonzero])
            vals.append(top_vals[nonzero])
        self.similarity = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_items, n_items),
        )
        self.n_items = n_items
        return self

    def _score(self, histories: Histories) -> np.ndarray:
        assert self.similarity is not None and self.n_items is not None
        return (history_matrix(histories, self.n_items) @ self.similarity).toarray()

    def params(self) -> dict[str, Any]:
        return {"neighbors": self.neighbors, "shrink": self.shrink}

    def _state(self) -> dict[str, np.ndarray]:
        assert self.similarity is not None
        s = self.similarity
        return {"data": s.data, "indices": s.indices, "indptr": s.indptr, "shape": np.asarray(s.shape)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        shape = tuple(int(v) for v in state["shape"])
        self.similarity = sp.csr_matrix((state["data"], state["indices"], state["indptr"]), shape=shape)
