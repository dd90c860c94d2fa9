"""The one ``Recommender`` shared by batch jobs, evaluation, the CLI and online serving.

histories → candidates (every source, blended) → ranking features → LightGBM → top-k.
Users with no history get the same path: only history-free sources (popularity) produce
candidates for them, and the answer is flagged ``fallback``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config
from recsys.ranking.features import BehaviouralFeatures, ranking_frame
from recsys.ranking.ranker import Ranker
from recsys.retrieval.base import CandidateSource
from recsys.retrieval.blend import blend

RESULT_COLUMNS = ["user_id", "item_id", "rank", "score", "sources", "fallback"]


@dataclass
class Recommender:
    config: Config
    catalog: ItemCatalog
    items: pl.DataFrame
    item_vectors: np.ndarray
    sources: list[CandidateSource]
    behaviour: BehaviouralFeatures
    ranker: Ranker | None
    run_id: str = ""

    def candidate_features(
        self, histories: Histories, as_of: dict[str, int], allowed: np.ndarray | None = None
    ) -> pl.DataFrame:
        """Every candidate of every user with all ranking features (no ranker needed: used to train it)."""
        retrieval = self.config.retrieval
        candidates = blend(self.sources, histories, retrieval.per_source_k, retrieval.candidates_k, allowed)
        return ranking_frame(
            candidates,
            histories,
            as_of,
            self.catalog,
            self.items,
            self.item_vectors,
            self.behaviour,
            retrieval.history_half_life_events,
        )

    def scored_candidates(
        self, histories: Histories, as_of: dict[str, int], allowed: np.ndarray | None = None
    ) -> pl.DataFrame:
        """:meth:`candidate_features` plus the ranker's ``score``."""
        if self.ranker is None:
            raise RuntimeError("this recommender has no ranker (it only generates candidates)")
        frame = self.candidate_features(histories, as_of, allowed)
        return frame.with_columns(pl.Series("score", self.ranker.predict(frame)))

    def recommend(
        self, histories: Histories, as_of: dict[str, int], k: int, allowed: np.ndarray | None = None
    ) -> pl.DataFrame:
        """Top ``k`` per user: user_id, item_id, rank (1..k), score, sources, fallback."""
        scored = self.scored_candidates(histories, as_of, allowed)
        cold = {
            user for user, items in zip(histories.user_ids, histories.items, strict=True) if not len(items)
        }
        return (
            top_k(scored, k)
            .with_columns(pl.col("user_id").is_in(list(cold)).alias("fallback"))
            .select(RESULT_COLUMNS)
        )

    @classmethod
    def load(cls, run_dir: Path, behaviour: BehaviouralFeatures | None = None) -> Recommender:
        """Everything a promoted run needs to answer, from its folder (see :mod:`recsys.pipeline`)."""
        from recsys.pipeline import load_recommender

        return load_recommender(run_dir, behaviour)


def top_k(scored: pl.DataFrame, k: int) -> pl.DataFrame:
    """The ``k`` highest-scored rows per user, with ``rank`` 1..k (ties broken by item index)."""
    return (
        scored.sort(["user_id", "score", "item_idx"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("rank"))
        .filter(pl.col("rank") <= k)
    )
