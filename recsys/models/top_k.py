"""Each user's best items from scores held densely or as sparse entries, with one tie rule.

A scorer's :meth:`~recsys.models.base.Scorer.top_k` reduces its scores to *entries* (row, item,
score): at least every user's ``k`` best valid items, ties included, never ``-inf``. :func:`best_of_entries`
then orders them the same way whatever produced them (score descending, then smaller item index), so
a scorer that skips the dense users x items matrix (sparse co-visitation, shared popularity) returns
exactly what the dense path would.
"""

from __future__ import annotations

import numpy as np

Entries = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(rows, items, scores float32) of candidate cells; any order, no ``-inf`` scores."""


def dense_entries(scores: np.ndarray, k: int) -> Entries:
    """The cells of each row's ``k`` best finite scores (ties at the k-th score: smaller columns)."""
    n_columns = scores.shape[1]
    if k >= n_columns:
        rows, columns = np.nonzero(scores > -np.inf)
        return rows, columns, scores[rows, columns]
    # each row's k-th score, selecting the k-th smallest negated score in place (with the k-th
    # largest, introselect slows tenfold on rows of mostly equal scores, e.g. item-kNN's zeros)
    negated = -scores
    negated.partition(k - 1, axis=1)
    kth = -negated[:, k - 1 : k]
    del negated
    keep = scores >= kth
    # rows with ties across the k-th place, or short of k finite scores, are cut exactly
    irregular = np.flatnonzero((keep.sum(axis=1) > k) | (kth[:, 0] == -np.inf))
    if len(irregular):
        part, part_kth = scores[irregular], kth[irregular]
        above = part > part_kth
        ties = (part == part_kth) & (part_kth > -np.inf)
        room = k - above.sum(axis=1, keepdims=True)
        keep[irregular] = above | (ties & (np.cumsum(ties, axis=1, dtype=np.int32) <= room))
    rows, columns = np.nonzero(keep)
    return rows, columns, scores[rows, columns]


def best_of_entries(entries: Entries, n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(items int64, scores float32), both ``n_rows x k``: each row's entries, best first (ties:
    smaller item index), the first ``k``; short rows padded with item ``-1`` and score ``-inf``."""
    rows, items, values = entries
    order = np.lexsort((items, -values, rows))
    rows, items, values = rows[order], items[order], values[order]
    place = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = place < k
    top_items = np.full((n_rows, k), -1, dtype=np.int64)
    top_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    top_items[rows[keep], place[keep]] = items[keep]
    top_scores[rows[keep], place[keep]] = values[keep]
    return top_items, top_scores


def history_cells(histories_items: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, items) int64 of every history item: the cells a user has seen."""
    lengths = [len(items) for items in histories_items]
    rows = np.repeat(np.arange(len(histories_items), dtype=np.int64), lengths)
    return rows, np.concatenate([*histories_items, np.zeros(0, dtype=np.int64)]).astype(np.int64)


def drop_seen(entries: Entries, histories_items: list[np.ndarray], n_items: int) -> Entries:
    """``entries`` without the cells of items in the row's history."""
    rows, items, values = entries
    seen_rows, seen_items = history_cells(histories_items)
    seen = np.isin(rows.astype(np.int64) * n_items + items, seen_rows * n_items + seen_items)
    return rows[~seen], items[~seen], values[~seen]
