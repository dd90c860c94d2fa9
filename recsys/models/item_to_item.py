"""Scorers that read a sparse items x items table from the user's latest items.

Co-visitation and the markov walk differ only in the table and in how a user's latest items
are carried through it; the query of latest items, the sparse read-out (never a users x items
matrix when ``top_k`` is asked) and the saved arrays are shared here.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import scipy.sparse as sp

from recsys.catalog import Histories, ItemCatalog
from recsys.models.base import Scorer
from recsys.models.top_k import Entries, drop_seen


class ItemToItemScorer(Scorer):
    """Holds ``matrix`` (items x items, CSR); subclasses say how a users x items result follows from
    it in :meth:`_found`. Items reached by no path score ``-inf``."""

    matrix: sp.csr_matrix | None = None
    recent_items: int

    @abstractmethod
    def _found(self, histories: Histories) -> sp.csr_matrix:
        """Users x items scores of the items reached (float64, rounded to float32 once by callers)."""

    def _set_matrix(
        self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, catalog: ItemCatalog
    ) -> None:
        n_items = len(catalog)
        self.matrix = sp.csr_matrix((weights, (rows, cols)), shape=(n_items, n_items))
        self.n_items = n_items

    def _recent_query(self, histories: Histories) -> sp.csr_matrix:
        """Users x items: each user's last ``recent_items`` items, the latest weighted 1, the one
        before 1/2, ..."""
        assert self.matrix is not None
        recent = [items[-self.recent_items :] for items in histories.items]
        lengths = np.asarray([len(items) for items in recent], dtype=np.int64)
        from_end = np.concatenate([np.arange(n, 0, -1) for n in lengths] or [np.zeros(0, np.int64)])
        return sp.csr_matrix(
            (
                1.0 / from_end,
                (
                    np.repeat(np.arange(len(recent)), lengths),
                    np.concatenate([*recent, np.zeros(0, np.int64)]),
                ),
            ),
            shape=(len(recent), self.matrix.shape[0]),
        )

    def _score(self, histories: Histories) -> np.ndarray:
        found = self._found(histories).tocoo()
        scores = np.full(found.shape, -np.inf, dtype=np.float32)
        scores[found.row, found.col] = found.data.astype(np.float32)
        return scores

    def _best_entries(self, histories: Histories, k: int, exclude_seen: bool) -> Entries:
        """The items reached themselves (a few hundred per user), never a users x items matrix."""
        found = self._found(histories).tocoo()
        entries = (found.row.astype(np.int64), found.col.astype(np.int64), found.data.astype(np.float32))
        return drop_seen(entries, histories.items, found.shape[1]) if exclude_seen else entries

    def _state(self) -> dict[str, np.ndarray]:
        assert self.matrix is not None
        return {"indptr": self.matrix.indptr, "indices": self.matrix.indices, "data": self.matrix.data}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        n_items = len(state["indptr"]) - 1
        self.matrix = sp.csr_matrix(
            (state["data"], state["indices"], state["indptr"]), shape=(n_items, n_items)
        )
