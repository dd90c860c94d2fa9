"""Blend candidate sources: the union per user, each source's rank and score kept as features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.catalog import Histories
from recsys.retrieval.base import CandidateSource


def source_columns(names: Sequence[str]) -> list[str]:
    """Feature columns the blend adds: ``cand_<source>_score`` and ``cand_<source>_rank`` per source."""
    return [f"cand_{name}_{kind}" for name in names for kind in ("score", "rank")]


@dataclass(frozen=True)
class Blend:
    """The candidates of a batch of users, flat: user ``u``'s are rows ``offsets[u]:offsets[u + 1]``,
    in ascending item order. ``ranks``/``scores`` are [candidates, sources] (float32, NaN: the source
    did not retrieve the item)."""

    source_names: list[str]
    offsets: np.ndarray
    items: np.ndarray
    ranks: np.ndarray
    scores: np.ndarray

    @property
    def user_rows(self) -> np.ndarray:
        """The user (row of the histories) of each candidate."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    def columns(self) -> np.ndarray:
        """[candidates, 2 × sources] in :func:`source_columns` order (score, rank per source)."""
        out = np.empty((len(self.items), 2 * len(self.source_names)), dtype=np.float32)
        out[:, 0::2], out[:, 1::2] = self.scores, self.ranks
        return out


def blend(
    sources: Sequence[CandidateSource],
    histories: Histories,
    per_source_k: int,
    total_k: int,
    allowed: np.ndarray | None = None,
    exclude_seen: bool | None = None,
) -> Blend:
    """Union of every source's top ``per_source_k``, at most ``total_k`` per user.

    When a user has more, candidates are kept by their best rank in any source (ties: smaller item
    index), so every source contributes its head. ``allowed`` is a boolean mask over the catalog
    (metadata filters), applied after the sources ranked (ranks stay the sources' own).
    ``exclude_seen`` overrides the sources' own setting.
    """
    if not sources:
        raise ValueError("at least one candidate source is required")
    users, items, columns, ranks, scores = [], [], [], [], []
    for column, source in enumerate(sources):
        found = source.retrieve(histories, per_source_k, exclude_seen)
        keep = found.items >= 0
        if allowed is not None:
            keep &= allowed[np.maximum(found.items, 0)]
        rows, slots = np.nonzero(keep)
        users.append(rows)
        items.append(found.items[keep])
        columns.append(np.full(len(rows), column))
        ranks.append((slots + 1).astype(np.float32))
        scores.append(found.scores[keep].astype(np.float32))
    user, item = np.concatenate(users), np.concatenate(items)
    span = int(item.max()) + 1 if len(item) else 1
    keys, position = np.unique(user * span + item, return_inverse=True)
    rank = np.full((len(keys), len(sources)), np.nan, dtype=np.float32)
    score = np.full((len(keys), len(sources)), np.nan, dtype=np.float32)
    column_of = np.concatenate(columns)
    rank[position, column_of], score[position, column_of] = np.concatenate(ranks), np.concatenate(scores)
    user, item = keys // span, keys % span
    counts = np.bincount(user, minlength=len(histories))
    if counts.max(initial=0) > total_k:  # keep each user's best ranks in any source
        order = np.lexsort((item, np.nanmin(rank, axis=1), user))
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        keep = np.sort(order[np.arange(len(order)) - starts < total_k])
        user, item, rank, score = user[keep], item[keep], rank[keep], score[keep]
        counts = np.bincount(user, minlength=len(histories))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return Blend([found.name for found in sources], offsets, item, rank, score)
