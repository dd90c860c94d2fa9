"""The one ``Recommender`` shared by batch jobs, evaluation, the CLI and online serving.

histories → candidates (every source, blended) → ranking features → LightGBM → top-k.
Users with no history get the same path: only history-free sources (popularity) produce
candidates for them, and the answer is flagged ``fallback``.

:meth:`Recommender.score_user` is the same computation for one user in numpy (online
serving): polars' fixed cost per operation is what dominates a single request, so the blend,
the source-rank/score and semantic features and the ranker input are built as arrays. The
values equal the batch path's (tests compare them), up to float rounding of sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config
from recsys.embeddings import user_vectors_from_history
from recsys.ranking.behaviour import OnlineBehaviour
from recsys.ranking.cold_slots import slot_count, top_with_cold_slots
from recsys.ranking.features import DAY, RECENT_FOR_SIMILARITY, BehaviouralFeatures, ranking_frame
from recsys.ranking.ranker import Ranker
from recsys.retrieval.base import CandidateSource
from recsys.retrieval.blend import blend
from recsys.retrieval.scorer_source import ScorerSource, top_k_items
from recsys.retrieval.semantic import SemanticSource

RESULT_COLUMNS = ["user_id", "item_id", "rank", "score", "sources", "fallback"]


@dataclass(frozen=True)
class UserCandidates:
    """One user's candidates (ascending item index) with every ranking feature and the ranker's score."""

    user_id: str
    as_of: int
    item_idx: np.ndarray
    source_names: list[str]
    source_ranks: np.ndarray
    """[candidates, sources] rank of the item in each source (NaN: not retrieved by it)."""
    features: np.ndarray
    """[candidates, features] in ``feature_names`` order (the ranker's): float32 values, NaN for missing."""
    feature_names: list[str]
    scores: np.ndarray
    fallback: bool
    """The user has no history: only history-free sources (popularity) could answer."""
    cold: np.ndarray | None = None
    """Per candidate: a cold item (see :mod:`recsys.ranking.cold_slots`); None: no places kept for them."""
    cold_share: float = 0.0

    def top(self, k: int) -> np.ndarray:
        """Positions of the ``k`` best candidates, best first (ties: smaller item index), with the
        cold items' places at the tail, as :meth:`Recommender.top_k`."""
        order = np.lexsort((self.item_idx, -self.scores))
        if self.cold is None:
            return order[:k]
        return top_with_cold_slots(order, self.cold, k, slot_count(k, self.cold_share))

    def sources(self, position: int) -> list[str]:
        """The sources that retrieved the candidate at ``position``, in config order."""
        ranks = self.source_ranks[position]
        return [name for name, rank in zip(self.source_names, ranks, strict=True) if not np.isnan(rank)]

    def frame(self, positions: np.ndarray) -> pl.DataFrame:
        """The candidates at ``positions`` as a frame: user_id, item_idx, every feature and ``score``."""
        values = {name: self.features[positions, i] for i, name in enumerate(self.feature_names)}
        return pl.DataFrame(
            {
                "user_id": [self.user_id] * len(positions),
                "item_idx": self.item_idx[positions],
                **values,
                "score": self.scores[positions],
            }
        )


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
            self.top_k(scored, k)
            .with_columns(pl.col("user_id").is_in(list(cold)).alias("fallback"))
            .select(RESULT_COLUMNS)
        )

    @cached_property
    def cold_items(self) -> np.ndarray | None:
        """Flags of the items the ``cold_text`` source may return; None without that source."""
        for source in self.sources:
            if isinstance(source, SemanticSource) and source.name == "cold_text" and source.allow is not None:
                flags = np.zeros(len(self.catalog), dtype=bool)
                flags[source.allow] = True
                return flags
        return None

    @property
    def cold_share(self) -> float:
        """Share of each list kept for cold items: configured, or measured on the ranker's labels."""
        if self.cold_items is None or self.ranker is None:
            return 0.0
        configured = self.config.ranking.cold_share
        return float(self.ranker.info.get("cold_share", 0.0)) if configured is None else configured

    def top_k(self, scored: pl.DataFrame, k: int) -> pl.DataFrame:
        """:func:`top_k` with the cold items' places at the tail of each user's list."""
        slots = slot_count(k, self.cold_share)
        if self.cold_items is None or slots == 0:
            return top_k(scored, k)
        ordered = scored.sort(["user_id", "score", "item_idx"], descending=[False, True, False])
        cold = self.cold_items[ordered["item_idx"].to_numpy()]
        starts = np.flatnonzero(ordered["user_id"].is_first_distinct().to_numpy())
        ends = np.append(starts[1:], ordered.height)
        rows = [
            start + top_with_cold_slots(np.arange(end - start), cold[start:end], k, slots)
            for start, end in zip(starts, ends, strict=True)
        ]
        picked = np.concatenate([np.zeros(0, np.int64), *rows])
        return ordered[picked].with_columns(
            pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("rank")
        )

    def score_user(
        self,
        histories: Histories,
        as_of: int,
        allowed: np.ndarray | None = None,
        exclude_seen: bool | None = None,
    ) -> UserCandidates:
        """:meth:`scored_candidates` for the one user of ``histories``, as arrays (the online path).

        ``exclude_seen`` overrides the sources' setting (``retrieval.exclude_seen``) for this call.
        """
        if len(histories) != 1:
            raise ValueError(f"score_user takes one user's history, got {len(histories)}")
        if self.ranker is None:
            raise RuntimeError("this recommender has no ranker (it only generates candidates)")
        retrieval = self.config.retrieval
        user_id, history = histories.user_ids[0], histories.items[0]
        found = [
            self._source_candidates(source, histories, retrieval.per_source_k, exclude_seen)
            for source in self.sources
        ]
        if allowed is not None:
            found = [
                (idx[allowed[idx]], score[allowed[idx]], rank[allowed[idx]]) for idx, score, rank in found
            ]
        union = np.unique(np.concatenate([np.zeros(0, np.int64), *(idx for idx, _, _ in found)]))
        n_sources = len(self.sources)
        ranks = np.full((len(union), n_sources), np.nan, dtype=np.float32)
        scores = np.full((len(union), n_sources), np.nan, dtype=np.float32)
        for column, (idx, score, rank) in enumerate(found):
            rows = np.searchsorted(union, idx)
            ranks[rows, column], scores[rows, column] = rank, score
        if len(union) > retrieval.candidates_k:  # keep the best ranks in any source (ties: item index)
            best = np.nanmin(ranks, axis=1)
            keep = np.sort(np.lexsort((union, best))[: retrieval.candidates_k])
            union, ranks, scores = union[keep], ranks[keep], scores[keep]
        columns: dict[str, np.ndarray] = {}
        for column, source in enumerate(self.sources):
            columns[f"cand_{source.name}_score"] = scores[:, column]
            columns[f"cand_{source.name}_rank"] = ranks[:, column]
        columns.update(self._semantic_features(histories, union))
        columns.update(self._behavioural_features(user_id, union, as_of, history))
        created = self._created_at
        columns["item_age_days"] = ((as_of - created[union]) / DAY).astype(np.float32)
        names = self.ranker.features
        # float32 values (what the batch path feeds the ranker) held as float64: LightGBM reads those faster
        matrix = np.empty((len(union), len(names)), dtype=np.float64)
        for i, name in enumerate(names):
            matrix[:, i] = columns[name].astype(np.float32)
        predicted = self.ranker.predict_matrix(matrix) if len(union) else np.zeros(0)
        return UserCandidates(
            user_id,
            as_of,
            union,
            [source.name for source in self.sources],
            ranks,
            matrix,
            list(names),
            predicted,
            fallback=not len(history),
            cold=None if self.cold_items is None else self.cold_items[union],
            cold_share=self.cold_share,
        )

    def _source_candidates(
        self, source: CandidateSource, histories: Histories, k: int, exclude_seen: bool | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item indices, scores float32, ranks) of one source for one user, as ``source.candidates`` gives.

        Scorer and semantic sources are queried through their numpy internals (no frames); others
        through ``candidates``, which uses their own ``exclude_seen``.
        """
        exclude = source.exclude_seen if exclude_seen is None else exclude_seen
        if isinstance(source, ScorerSource):
            indices, values = top_k_items(source.scorer, histories, k, exclude, source.max_batch_cells)
            keep = np.flatnonzero(indices[0] >= 0)
            return indices[0, keep], values[0, keep], (keep + 1).astype(np.float32)
        if isinstance(source, SemanticSource):
            vectors = source.user_vectors(histories)
            if not np.linalg.norm(vectors[0]) > 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
            values, indices = source.index.search(
                vectors, k, exclude=histories.items if exclude else None, allow=source.allow
            )
            keep = np.flatnonzero(indices[0] >= 0)
            return indices[0, keep], values[0, keep], (keep + 1).astype(np.float32)
        frame = source.candidates(histories, k)
        return (
            frame["item_idx"].to_numpy(),
            frame["score"].to_numpy().astype(np.float32),
            frame["rank"].to_numpy().astype(np.float32),
        )

    @cached_property
    def _created_at(self) -> np.ndarray:
        return self.items["created_at"].to_numpy().astype(np.float64)

    def _semantic_features(self, histories: Histories, candidates: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`~recsys.ranking.features.semantic_features` for one user."""
        half_life = self.config.retrieval.history_half_life_events
        nan = np.full(len(candidates), np.nan, dtype=np.float32)
        recent = histories.items[0][-RECENT_FOR_SIMILARITY:]
        if not len(recent):
            return {"user_item_cosine": nan, "max_sim_recent": nan, "mean_sim_recent": nan.copy()}
        vector = user_vectors_from_history(self.item_vectors, histories, half_life)[0]
        candidate_vectors = self.item_vectors[candidates]
        sims = candidate_vectors @ self.item_vectors[recent].T
        return {
            "user_item_cosine": candidate_vectors @ vector,
            "max_sim_recent": sims.max(axis=1) if len(candidates) else nan,
            "mean_sim_recent": sims.mean(axis=1) if len(candidates) else nan.copy(),
        }

    def _behavioural_features(
        self, user_id: str, candidates: np.ndarray, as_of: int, history: np.ndarray
    ) -> dict[str, np.ndarray]:
        names = self.behaviour.names()
        if isinstance(self.behaviour, OnlineBehaviour):  # straight to arrays, no frames
            values = self.behaviour.user_features(user_id, as_of, candidates, seen=history)
            return {name: values[:, i] for i, name in enumerate(names)}
        rows = pl.DataFrame(
            {
                "user_id": [user_id] * len(candidates),
                "item_id": self.catalog.ids[candidates].tolist(),
                "ts": [as_of] * len(candidates),
            },
            schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Int64},
        )
        frame = self.behaviour.features(rows)
        return {name: frame[name].to_numpy() for name in names}


def top_k(scored: pl.DataFrame, k: int) -> pl.DataFrame:
    """The ``k`` highest-scored rows per user, with ``rank`` 1..k (ties broken by item index)."""
    return (
        scored.sort(["user_id", "score", "item_idx"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("rank"))
        .filter(pl.col("rank") <= k)
    )
