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

from recsys.catalog import Histories, ItemCatalog
from recsys.embeddings import user_vectors_from_history

SEMANTIC_FEATURES = ["user_item_cosine", "max_sim_recent", "mean_sim_recent"]
ITEM_FEATURES = ["item_age_days"]
RECENT_FOR_SIMILARITY = 10
DAY = 86_400.0


class BehaviouralFeatures(Protocol):
    """Feature-store values for (user_id, item_id, ts) rows, each as known strictly before ts."""

    def names(self) -> list[str]: ...

    def features(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` (user_id, item_id, ts) in the same order, plus one column per feature."""
        ...


def semantic_features(
    candidates: pl.DataFrame, histories: Histories, item_vectors: np.ndarray, half_life_events: float
) -> pl.DataFrame:
    """Cosine of the candidate to the user vector, and max/mean cosine to the user's last items.

    ``candidates`` must be sorted by user in the order of ``histories``; computed per user
    with one small matrix product, so memory stays O(candidates).
    """
    position = {user: row for row, user in enumerate(histories.user_ids)}
    users = candidates["user_id"].to_list()
    items = candidates["item_idx"].to_numpy()
    vectors = user_vectors_from_history(item_vectors, histories, half_life_events)
    cosine = np.full(len(items), np.nan, dtype=np.float32)
    max_sim = np.full(len(items), np.nan, dtype=np.float32)
    mean_sim = np.full(len(items), np.nan, dtype=np.float32)
    boundaries = np.flatnonzero(
        np.r_[True, np.asarray(users[1:], dtype=object) != np.asarray(users[:-1], dtype=object)]
    )
    ends = np.r_[boundaries[1:], len(users)]
    for start, end in zip(boundaries, ends, strict=True):
        row = position[users[start]]
        recent = histories.items[row][-RECENT_FOR_SIMILARITY:]
        if not len(recent):
            continue
        candidate_vectors = item_vectors[items[start:end]]
        cosine[start:end] = candidate_vectors @ vectors[row]
        sims = candidate_vectors @ item_vectors[recent].T
        max_sim[start:end] = sims.max(axis=1)
        mean_sim[start:end] = sims.mean(axis=1)
    return pl.DataFrame({"user_item_cosine": cosine, "max_sim_recent": max_sim, "mean_sim_recent": mean_sim})


def ranking_frame(
    candidates: pl.DataFrame,
    histories: Histories,
    as_of: dict[str, int],
    catalog: ItemCatalog,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    behaviour: BehaviouralFeatures,
    half_life_events: float,
) -> pl.DataFrame:
    """Candidates (from :func:`recsys.retrieval.blend.blend`) with every ranking feature.

    ``as_of`` gives, per user, the moment the features describe (strictly earlier events only).
    """
    order = {user: row for row, user in enumerate(histories.user_ids)}
    candidates = candidates.with_columns(
        pl.col("user_id").replace_strict(order, return_dtype=pl.Int64).alias("_user_row")
    ).sort("_user_row", "item_idx")
    created = items["created_at"].to_numpy().astype(np.float64)
    frame = candidates.with_columns(
        pl.Series("item_id", catalog.ids[candidates["item_idx"].to_numpy()].tolist(), dtype=pl.String),
        pl.col("user_id").replace_strict(as_of, return_dtype=pl.Int64).alias("ts"),
    )
    semantic = semantic_features(frame, histories, item_vectors, half_life_events)
    behavioural = behaviour.features(frame.select("user_id", "item_id", "ts")).drop(
        "user_id", "item_id", "ts"
    )
    age = (frame["ts"].to_numpy() - created[frame["item_idx"].to_numpy()]) / DAY
    return pl.concat(
        [
            frame.drop("_user_row"),
            semantic,
            behavioural,
            pl.DataFrame({"item_age_days": age.astype(np.float32)}),
        ],
        how="horizontal",
    )
