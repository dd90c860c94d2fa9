"""Ranking features per (user, candidate): semantic match, source ranks/scores, behaviour, freshness.

Behavioural features come from the feature store through a :class:`BehaviouralFeatures`
provider: offline (point-in-time from the event log, for training, evaluation and batch)
or online (from the online store, for serving). Both give the same columns for the same
as-of time, so the ranker sees the same inputs in training and in serving.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import polars as pl

from feature_store.columns import ITEM_TS
from recsys.catalog import Histories, ItemCatalog
from recsys.embeddings import user_vectors_from_history
from recsys.ranking.behaviour import OnlineBehaviour

SEMANTIC_FEATURES = ["user_item_cosine", "max_sim_recent", "mean_sim_recent"]
ITEM_FEATURES = ["item_age_days"]
RECENT_FOR_SIMILARITY = 10
DAY = 86_400.0


class BehaviouralFeatures(Protocol):
    """Feature-store values for (user_id, item_id, ts) rows, each as known strictly before ts."""

    def names(self) -> list[str]: ...

    def features(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` (user_id, item_id, ts, and optionally ``item_ts``: when the items' state is read,
        :data:`~feature_store.columns.ITEM_TS`) in the same order, plus one column per feature."""
        ...


def semantic_features(
    histories: Histories, offsets: np.ndarray, items: np.ndarray, item_vectors: np.ndarray, half_life: float
) -> np.ndarray:
    """[candidates, 3] in :data:`SEMANTIC_FEATURES` order: cosine of the candidate to the user vector,
    and max/mean cosine to the user's last items (NaN for a user without history).

    User ``u``'s candidates are ``items[offsets[u]:offsets[u + 1]]``; one small matrix product per
    user, so memory stays O(candidates) and a user's values do not depend on the batch around them.
    """
    out = np.full((len(items), len(SEMANTIC_FEATURES)), np.nan, dtype=np.float32)
    vectors = user_vectors_from_history(item_vectors, histories, half_life)
    for row, (vector, history) in enumerate(zip(vectors, histories.items, strict=True)):
        start, end = offsets[row], offsets[row + 1]
        if start == end or not len(history):
            continue
        candidate_vectors = item_vectors[items[start:end]]
        sims = candidate_vectors @ item_vectors[history[-RECENT_FOR_SIMILARITY:]].T
        out[start:end, 0] = candidate_vectors @ vector
        out[start:end, 1] = sims.max(axis=1)
        out[start:end, 2] = sims.mean(axis=1)
    return out


def behavioural_features(
    behaviour: BehaviouralFeatures,
    catalog: ItemCatalog,
    histories: Histories,
    offsets: np.ndarray,
    items: np.ndarray,
    as_of: np.ndarray,
    item_as_of: np.ndarray,
) -> np.ndarray:
    """[candidates, features] float64 in ``behaviour.names()`` order, each user's as of ``as_of[u]``,
    the items' state (offline) as of ``item_as_of[u]`` (at or before it).

    The online store is read per user (:meth:`OnlineBehaviour.user_features`, arrays: item state is
    the latest push's); the offline provider computes the whole batch point in time in one call (its
    cost is per call, not per row).
    """
    names = behaviour.names()
    if isinstance(behaviour, OnlineBehaviour):
        out = np.empty((len(items), len(names)), dtype=np.float64)
        for row, user_id in enumerate(histories.user_ids):
            start, end = offsets[row], offsets[row + 1]
            if start < end:
                out[start:end] = behaviour.user_features(
                    user_id, int(as_of[row]), items[start:end], seen=histories.items[row]
                )
        return out
    user_rows = np.repeat(np.arange(len(histories)), np.diff(offsets))
    rows = pl.DataFrame(
        {
            "user_id": np.asarray(histories.user_ids, dtype=object)[user_rows].tolist(),
            "item_id": catalog.ids[items].tolist(),
            "ts": as_of[user_rows],
            ITEM_TS: item_as_of[user_rows],
        },
        schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Int64, ITEM_TS: pl.Int64},
    )
    frame = behaviour.features(rows)
    return frame.select(pl.col(name).cast(pl.Float64) for name in names).to_numpy().reshape(len(items), -1)


def item_features(created_at: np.ndarray, items: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """[candidates, 1] in :data:`ITEM_FEATURES` order: the item's age in days at the row's moment."""
    return ((ts - created_at[items]) / DAY).astype(np.float32)[:, None]
