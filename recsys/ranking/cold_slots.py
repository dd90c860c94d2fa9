"""Places kept for cold items at the tail of every list.

A ranker learns from interactions, and items with few interactions are rarely the ones chosen,
so it ranks a new item below the whole head of the catalog even when its text suits the user:
measured through the CLI, the shipped lists held fewer cold items than plain text similarity.
So the last places of each list go to the best-scored cold candidates (items the ``cold_text``
source may return), unless the ranker put that many there itself. How many: the share of the
ranker's label window that went to cold items, between a floor and a cap, so a catalog that lives on
new releases gives them up to the cap. The floor keeps places even where the label window held few
cold picks: the window is one short stretch of the past, and measured through the CLI the lists it
sized held fewer cold items that users went on to choose than plain text similarity did. The head of
the list (what NDCG@10 sees) is the ranker's whenever the share is small.
"""

from __future__ import annotations

import itertools

import numpy as np


def slot_count(k: int, share: float) -> int:
    """Places of a ``k`` list kept for cold items."""
    return min(k, round(k * share))


def top_with_cold_slots(order: np.ndarray, cold: np.ndarray, k: int, slots: int) -> np.ndarray:
    """The first ``k`` of ``order`` (candidate positions, best first), with at least ``slots`` cold
    ones when there are: the lowest-ranked warm picks give way to the best cold candidates left,
    which take the last places in their own order.

    ``cold``: one flag per candidate position.
    """
    top = order[:k]
    missing = slots - int(cold[top].sum())
    if missing <= 0:
        return top
    rest = order[k:]
    extra = rest[cold[rest]][:missing]
    if not len(extra):
        return top
    warm = np.flatnonzero(~cold[top])
    dropped = warm[len(warm) - len(extra) :]
    kept = np.delete(top, dropped)
    return np.concatenate([kept, extra])


def lists_with_cold_slots(bounds: np.ndarray, cold: np.ndarray, k: int, slots: int) -> np.ndarray:
    """:func:`top_with_cold_slots` for users whose candidates lie in consecutive blocks, each sorted best
    first (``bounds``: the blocks' starts, then the end); the rows of every user's list, user by user."""
    rows = [
        start + top_with_cold_slots(np.arange(end - start), cold[start:end], k, slots)
        for start, end in itertools.pairwise(bounds.tolist())
    ]
    return np.concatenate([np.zeros(0, np.int64), *rows])


def label_cold_share(target_items: np.ndarray, cold_items: np.ndarray, floor: float, cap: float) -> float:
    """Share of ``target_items`` (item indices of the label window's events) that are cold, kept
    between ``floor`` and ``cap`` (``floor`` when the window is empty).

    ``cold_items``: one flag per catalog item, as of the data before the window.
    """
    measured = float(cold_items[target_items].mean()) if len(target_items) else 0.0
    return min(cap, max(floor, measured))
