"""The one ``Recommender`` shared by batch jobs, evaluation, training, the CLI and online serving.

histories → candidates (every source, blended) → ranking features → LightGBM → top-k, computed once,
on arrays, for a batch of users: :meth:`Recommender.score_users`. Online serving is the same call for
a batch of one (:meth:`Recommender.score_user`); the frames of training, evaluation and batch files
(:meth:`Recommender.candidate_features`, :meth:`Recommender.recommend`) are conversions of its result.
Users with no history get the same path: only history-free sources (popularity) produce candidates
for them, and the answer is flagged ``fallback``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config
from recsys.moments import UserMoments
from recsys.ranking.cold_slots import lists_with_cold_slots, slot_count, top_with_cold_slots
from recsys.ranking.features import (
    ITEM_FEATURES,
    SEMANTIC_FEATURES,
    BehaviouralFeatures,
    behavioural_features,
    item_features,
    semantic_features,
)
from recsys.ranking.ranker import Ranker
from recsys.retrieval.base import CandidateSource
from recsys.retrieval.blend import Blend, blend, source_columns
from recsys.retrieval.semantic import SemanticSource

RESULT_COLUMNS = ["user_id", "item_id", "rank", "score", "sources", "fallback"]
PREDICT_ROWS = 65_536
"""Candidates handed to the ranker at once: its float64 input stays small whatever the batch."""


@dataclass(frozen=True)
class UserCandidates:
    """One user's candidates (ascending item index) with the ranker's features and score."""

    user_id: str
    as_of: int
    item_idx: np.ndarray
    source_names: list[str]
    source_ranks: np.ndarray
    """[candidates, sources] rank of the item in each source (NaN: not retrieved by it)."""
    features: np.ndarray
    """[candidates, features] in ``feature_names`` order (the ranker's): the float32 values the ranker
    reads, NaN for missing."""
    feature_names: list[str]
    scores: np.ndarray
    fallback: bool
    """The user has no history: only history-free sources (popularity) could answer."""
    cold: np.ndarray | None = None
    """Per candidate: a cold item (see :mod:`recsys.ranking.cold_slots`); None: no places kept for them."""
    cold_share: float = 0.0

    def top(self, k: int) -> np.ndarray:
        """Positions of the ``k`` best candidates, best first (ties: smaller item index), with the cold
        items' places at the tail, as :meth:`ScoredUsers.top`."""
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


@dataclass(frozen=True)
class ScoredUsers:
    """Every candidate of a batch of users with all ranking features and (when ranked) the ranker's score.

    Candidates are flat, user by user (see :class:`~recsys.retrieval.blend.Blend`); ``features`` is
    [candidates, ``feature_names``] float64 holding each feature as computed (float32 for source,
    semantic and item features, float64 for behavioural ones).
    """

    user_ids: list[str]
    catalog_ids: np.ndarray
    as_of: np.ndarray
    histories_empty: np.ndarray
    """Per user: no history (the answer is a fallback)."""
    candidates: Blend
    feature_names: list[str]
    features: np.ndarray
    float32: list[bool]
    """Per feature: computed as float32 (its frame column is Float32, else Float64)."""
    scores: np.ndarray | None
    ranker_features: list[str]
    cold_items: np.ndarray | None = None
    """Per catalog item: cold (its places are kept at the tail of each list); None: no places kept."""
    cold_share: float = 0.0

    def ranker_input(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """The ranker's input for ``rows``: its features, in its order, as float32 values held as
        float64 (what LightGBM was trained on; float64 is what its predictors read without a copy)."""
        columns = [self.feature_names.index(name) for name in self.ranker_features]
        return self.features[rows][:, columns].astype(np.float32).astype(np.float64)

    def user(self, row: int) -> UserCandidates:
        """The candidates of the user at ``row`` (the online answer)."""
        if self.scores is None:
            raise RuntimeError("these candidates were not ranked")
        rows = slice(int(self.candidates.offsets[row]), int(self.candidates.offsets[row + 1]))
        return UserCandidates(
            self.user_ids[row],
            int(self.as_of[row]),
            self.candidates.items[rows],
            self.candidates.source_names,
            self.candidates.ranks[rows],
            self.ranker_input(rows),
            list(self.ranker_features),
            self.scores[rows],
            fallback=bool(self.histories_empty[row]),
            cold=None if self.cold_items is None else self.cold_items[self.candidates.items[rows]],
            cold_share=self.cold_share,
        )

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, ranks 1..k) of every user's ``k`` best candidates, user by user, best first
        (ties: smaller item index), with the cold items' places at the tail of each list."""
        if self.scores is None:
            raise RuntimeError("these candidates were not ranked")
        user_rows = self.candidates.user_rows
        order = np.lexsort((self.candidates.items, -self.scores, user_rows))
        slots = slot_count(k, self.cold_share)
        if self.cold_items is not None and slots:
            cold = self.cold_items[self.candidates.items[order]]
            order = order[lists_with_cold_slots(self.candidates.offsets, cold, k, slots)]
        rank = np.arange(len(order)) - np.searchsorted(user_rows[order], user_rows[order]) + 1
        keep = rank <= k
        return order[keep], rank[keep].astype(np.int32)

    def sources_column(self, positions: np.ndarray) -> pl.Series:
        """``sources``: for each candidate at ``positions``, the names of the sources that retrieved it."""
        names = self.candidates.source_names
        retrieved = pl.DataFrame(
            {name: ~np.isnan(self.candidates.ranks[positions, i]) for i, name in enumerate(names)}
        )
        return retrieved.select(
            pl.concat_list([pl.when(pl.col(name)).then(pl.lit(name)) for name in names])
            .list.drop_nulls()
            .alias("sources")
        ).to_series()

    def frame(self) -> pl.DataFrame:
        """Every candidate as a row: user_id, item_idx, the source columns, sources, item_id, ts, the
        other features (``score`` too when ranked); sorted by user (batch order), then item index."""
        candidates = self.candidates
        user_rows = candidates.user_rows
        every = np.arange(len(candidates.items))
        sources = set(source_columns(candidates.source_names))
        columns: list[pl.Series] = [
            pl.Series("user_id", np.asarray(self.user_ids, dtype=object)[user_rows].tolist(), pl.String),
            pl.Series("item_idx", candidates.items, pl.Int64),
        ]
        rest = []
        for i, name in enumerate(self.feature_names):
            values = pl.Series(name, self.features[:, i])
            if name in sources:
                kind = pl.Int32 if name.endswith("_rank") else pl.Float32
                columns.append(values.fill_nan(None).cast(kind))
            else:
                rest.append(values.cast(pl.Float32) if self.float32[i] else values)
        columns += [
            self.sources_column(every),
            pl.Series("item_id", self.catalog_ids[candidates.items].tolist(), pl.String),
            pl.Series("ts", self.as_of[user_rows], pl.Int64),
            *rest,
        ]
        if self.scores is not None:
            columns.append(pl.Series("score", self.scores, pl.Float64))
        return pl.DataFrame(columns)


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

    def score_users(
        self,
        histories: Histories,
        as_of: UserMoments,
        allowed: np.ndarray | None = None,
        exclude_seen: bool | None = None,
        rank: bool = True,
    ) -> ScoredUsers:
        """Candidates of every user of ``histories`` with all ranking features and, with ``rank``, the
        ranker's score: the one scoring path (batch chunks, evaluation, training sets, online requests).

        ``as_of`` places the users in time (:class:`~recsys.moments.UserMoments`: the moment their
        features describe, strictly earlier events only, and when their items' state is read); ``allowed`` is
        a boolean mask over the catalog (metadata filters); ``exclude_seen`` overrides the sources'
        setting (``retrieval.exclude_seen``) for this call.
        """
        if rank and self.ranker is None:
            raise RuntimeError("this recommender has no ranker (it only generates candidates)")
        retrieval = self.config.retrieval
        candidates = blend(
            self.sources, histories, retrieval.per_source_k, retrieval.candidates_k, allowed, exclude_seen
        )
        moments, item_moments = as_of.arrays(histories.user_ids)
        offsets, items = candidates.offsets, candidates.items
        # every feature group: its names and its [candidates, names] values (a new feature is one entry)
        groups = [
            (source_columns(candidates.source_names), candidates.columns()),
            (
                SEMANTIC_FEATURES,
                semantic_features(
                    histories, offsets, items, self.item_vectors, retrieval.history_half_life_events
                ),
            ),
            (
                self.behaviour.names(),
                behavioural_features(
                    self.behaviour,
                    self.catalog,
                    histories,
                    offsets,
                    items,
                    moments,
                    item_moments,
                ),
            ),
            (ITEM_FEATURES, item_features(self._created_at, items, moments[candidates.user_rows])),
        ]
        scored = ScoredUsers(
            list(histories.user_ids),
            self.catalog.ids,
            moments,
            np.asarray([not len(history) for history in histories.items], dtype=bool),
            candidates,
            [name for names, _ in groups for name in names],
            np.concatenate([values.astype(np.float64) for _, values in groups], axis=1),
            [values.dtype == np.float32 for names, values in groups for _ in names],
            None,
            [] if self.ranker is None else list(self.ranker.features),
            self.cold_items,
            self.cold_share,
        )
        if not rank:
            return scored
        assert self.ranker is not None
        unknown = sorted(set(scored.ranker_features) - set(scored.feature_names))
        if unknown:
            raise ValueError(f"the ranker needs features this recommender does not compute: {unknown}")
        scores = np.zeros(len(items), dtype=np.float64)
        for start in range(0, len(items), PREDICT_ROWS):
            rows = slice(start, start + PREDICT_ROWS)
            scores[rows] = self.ranker.predict_matrix(scored.ranker_input(rows))
        return dataclasses.replace(scored, scores=scores)

    def score_user(
        self,
        histories: Histories,
        as_of: int,
        allowed: np.ndarray | None = None,
        exclude_seen: bool | None = None,
    ) -> UserCandidates:
        """:meth:`score_users` for the one user of ``histories`` (the online path)."""
        if len(histories) != 1:
            raise ValueError(f"score_user takes one user's history, got {len(histories)}")
        placed = UserMoments.at(histories.user_ids, as_of)
        return self.score_users(histories, placed, allowed, exclude_seen).user(0)

    def candidate_features(
        self, histories: Histories, as_of: UserMoments, allowed: np.ndarray | None = None
    ) -> pl.DataFrame:
        """Every candidate of every user with all ranking features (no ranker needed: used to train it)."""
        return self.score_users(histories, as_of, allowed, rank=False).frame()

    def scored_candidates(
        self, histories: Histories, as_of: UserMoments, allowed: np.ndarray | None = None
    ) -> pl.DataFrame:
        """:meth:`candidate_features` plus the ranker's ``score``."""
        return self.score_users(histories, as_of, allowed).frame()

    def recommend(
        self, histories: Histories, as_of: UserMoments, k: int, allowed: np.ndarray | None = None
    ) -> pl.DataFrame:
        """Top ``k`` per user, sorted by user id: user_id, item_id, rank (1..k), score, sources, fallback."""
        scored = self.score_users(histories, as_of, allowed)
        assert scored.scores is not None
        positions, ranks = scored.top(k)
        user_rows = scored.candidates.user_rows[positions]
        return pl.DataFrame(
            [
                pl.Series(
                    "user_id", np.asarray(scored.user_ids, dtype=object)[user_rows].tolist(), pl.String
                ),
                pl.Series(
                    "item_id", self.catalog.ids[scored.candidates.items[positions]].tolist(), pl.String
                ),
                pl.Series("rank", ranks, pl.Int32),
                pl.Series("score", scored.scores[positions], pl.Float64),
                scored.sources_column(positions),
                pl.Series("fallback", scored.histories_empty[user_rows], pl.Boolean),
            ]
        ).sort("user_id", maintain_order=True)

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
        """:func:`top_k` of a frame of scored candidates, with the cold items' places at the tail of
        each user's list (as :meth:`ScoredUsers.top`)."""
        slots = slot_count(k, self.cold_share)
        if self.cold_items is None or slots == 0:
            return top_k(scored, k)
        ordered = scored.sort(["user_id", "score", "item_idx"], descending=[False, True, False])
        cold = self.cold_items[ordered["item_idx"].to_numpy()]
        starts = np.flatnonzero(ordered["user_id"].is_first_distinct().to_numpy())
        picked = lists_with_cold_slots(np.append(starts, ordered.height), cold, k, slots)
        return ordered[picked].with_columns(
            pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("rank")
        )

    @cached_property
    def _created_at(self) -> np.ndarray:
        return self.items["created_at"].to_numpy().astype(np.float64)


def top_k(scored: pl.DataFrame, k: int) -> pl.DataFrame:
    """The ``k`` highest-scored rows per user, with ``rank`` 1..k (ties broken by item index)."""
    return (
        scored.sort(["user_id", "score", "item_idx"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("rank"))
        .filter(pl.col("rank") <= k)
    )
