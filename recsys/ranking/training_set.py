"""The ranker's training recipe: labelled candidates as of each user's moment, then LightGBM.

The same recipe trains the evaluated ranker (labels from the window just before the evaluation
window) and the shipped one (labels from the data's latest window): only the parts differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.config import RankingConfig
from recsys.evaluation.metrics import ndcg_at_k, relevance
from recsys.moments import Moments, UserMoments, before_targets, per_user_moments
from recsys.ranking.cold_slots import label_cold_share
from recsys.ranking.dask_training import fit_ranker
from recsys.ranking.ranker import Ranker, average_rankers, ndcg_at
from recsys.recommend import Recommender
from recsys.retrieval.blend import source_columns

TRIAL_K = 10
"""Trial sources are judged by NDCG@TRIAL_K, the figure the ranker is early-stopped and evaluated on."""


def _target_histories(
    history: pl.DataFrame, targets: pl.DataFrame, catalog: ItemCatalog, max_users: int | None, seed: int
) -> Histories:
    """Histories of the users with target events (a seeded sample of ``max_users`` when more)."""
    users = targets.select("user_id").unique().sort("user_id")
    if max_users is not None and users.height > max_users:
        users = users.sample(max_users, seed=seed).sort("user_id")
    return Histories.from_interactions(history, catalog, users=users["user_id"].to_list())


def _targets(
    history: pl.DataFrame,
    targets: pl.DataFrame,
    catalog: ItemCatalog,
    max_users: int | None,
    seed: int,
    per_user: bool,
) -> tuple[Histories, UserMoments]:
    """Histories of users with target events, and each user's as-of time: where the batch job would
    place them after ``history`` (:class:`~recsys.moments.Moments`), so training mirrors serving, but
    never after their first target (:func:`~recsys.moments.before_targets`)."""
    histories = _target_histories(history, targets, catalog, max_users, seed)
    return histories, before_targets(Moments.of_events(history, per_user).of(histories), targets)


@dataclass(frozen=True)
class SourceTrial:
    """Which sources a ranker blends: ``chosen`` (in the recommender's order) and each source's NDCG@10
    alone on the label window (empty when there was no trial source to judge)."""

    chosen: list[str]
    ndcg: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "ndcg@10": self.ndcg}


def trial_sources(
    recommender: Recommender, history: pl.DataFrame, targets: pl.DataFrame, max_users: int | None, seed: int
) -> SourceTrial:
    """Keep a trial source (``retrieval.trial_sources``) when, alone, it ranks the users of ``targets``
    (as of ``history``) at least ``retrieval.trial_min_share`` as well as the best of
    ``retrieval.sources``: each source's own top :data:`TRIAL_K`, scored like a baseline."""
    retrieval = recommender.config.retrieval
    names = [source.name for source in recommender.sources]
    if all(name in retrieval.sources for name in names):
        return SourceTrial(names, {})
    histories = _target_histories(history, targets, recommender.catalog, max_users, seed)
    indexed = recommender.catalog.with_index(targets.select("user_id", "item_id"))
    by_user = dict(indexed.group_by("user_id").agg(pl.col("item_idx").unique()).iter_rows())
    truth = [np.asarray(by_user.get(user, []), dtype=np.int64) for user in histories.user_ids]
    ndcg = {
        source.name: float(
            ndcg_at_k(relevance(source.retrieve(histories, TRIAL_K).items, truth), truth, TRIAL_K).mean()
        )
        for source in recommender.sources
    }
    best = max((ndcg[name] for name in names if name in retrieval.sources), default=0.0)
    chosen = [
        name for name in names if name in retrieval.sources or ndcg[name] >= retrieval.trial_min_share * best
    ]
    return SourceTrial(chosen, ndcg)


def labelled_candidates(
    recommender: Recommender,
    history: pl.DataFrame,
    targets: pl.DataFrame,
    max_users: int | None,
    seed: int,
    graded: bool = False,
) -> pl.DataFrame:
    """Candidates with features and a label: 1 if the user interacted with the item in ``targets``.

    ``graded``: 2 for items rated >= 4, 1 for other interactions. Users none of whose targets
    were retrieved carry no ranking signal and are dropped.
    """
    config = recommender.config
    per_user = per_user_moments(config.recommend.as_of, config.split.protocol)
    histories, as_of = _targets(history, targets, recommender.catalog, max_users, seed, per_user)
    frame = recommender.candidate_features(histories, as_of)
    relevant = pl.lit(1)
    if graded and "rating" in targets.columns:
        relevant = pl.when(pl.col("rating").max() >= 4).then(2).otherwise(1)
    grades = targets.group_by("user_id", "item_id").agg(relevant.alias("label"))
    frame = frame.join(grades, on=["user_id", "item_id"], how="left").with_columns(
        pl.col("label").fill_null(0)
    )
    useful = frame.group_by("user_id").agg(pl.col("label").max()).filter(pl.col("label") > 0)["user_id"]
    return frame.filter(pl.col("user_id").is_in(useful.implode())).sort("user_id", "item_idx")


def training_users(config: RankingConfig, candidates_k: int) -> int:
    """Users sampled for one training set: ``max_users``, fewer when their candidates would exceed
    ``max_rows``."""
    by_rows = max(1, config.max_rows // candidates_k)
    return by_rows if config.max_users is None else min(config.max_users, by_rows)


def ensemble_size(config: RankingConfig, rows: int) -> int:
    """Members of the ranker's ensemble for a label set of ``rows``: ``members``, fewer when together
    they would train on more than ``member_rows``."""
    return max(1, min(config.members, config.member_rows // max(rows, 1)))


def train_ranker(
    recommender: Recommender,
    history: pl.DataFrame,
    label_train: pl.DataFrame,
    label_valid: pl.DataFrame,
    names: list[str],
    config: RankingConfig,
) -> Ranker:
    """LightGBM lambdarank on candidates of ``history``'s users labelled by ``label_train``,
    early-stopped on ``label_valid`` (as targets of history + label_train).

    With ``config.refit``, the model is then grown again, with the chosen number of trees, on the
    whole label window (both halves as targets of ``history``): twice the labels, and the same
    shape of task as evaluation and serving (everything after a moment is a target). Several seeds
    each go through both fits and the ranker is their mean (:func:`ensemble_size` of them,
    :func:`~recsys.ranking.ranker.average_rankers`). Fits go to a Dask cluster when ``config.dask``
    configures one and the label set is large enough. Records the label window's share of events
    on cold items (``cold_share``, see :mod:`recsys.ranking.cold_slots`).
    """

    max_users = training_users(config, recommender.config.retrieval.candidates_k)
    trial = trial_sources(recommender, history, pl.concat([label_train, label_valid]), max_users, config.seed)
    dropped = [source.name for source in recommender.sources if source.name not in trial.chosen]
    if dropped:
        kept = [source for source in recommender.sources if source.name in trial.chosen]
        recommender = dataclasses.replace(recommender, sources=kept)
        names = [name for name in names if name not in source_columns(dropped)]

    def rows(before: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
        return labelled_candidates(recommender, before, targets, max_users, config.seed, graded=config.graded)

    train = rows(history, label_train)
    valid = rows(pl.concat([history, label_train]), label_valid)
    window = rows(history, pl.concat([label_train, label_valid])) if config.refit else train
    seeds = [config.seed + member for member in range(ensemble_size(config, window.height))]
    stopped = [fit_ranker(train, valid, names, config.model_copy(update={"seed": seed})) for seed in seeds]
    model = average_rankers(stopped)
    fallback = best_single_source(model, valid)
    valid_ndcg = fallback["model_ndcg@10"]
    if config.refit:
        refits = [
            fit_ranker(
                window,
                None,
                names,
                config.model_copy(update={"seed": seed}),
                rounds=max(1, round(chosen.info["best_iteration"] * config.refit_rounds_factor)),
            )
            for seed, chosen in zip(seeds, stopped, strict=True)
        ]
        early_stopping = model.info
        model = average_rankers(refits)
        model.info |= {"early_stopping": early_stopping, "refit": True}
    model.info |= {"valid_ndcg@10": valid_ndcg, "validation": fallback, "sources": trial.chosen}
    if trial.ndcg:
        min_share = recommender.config.retrieval.trial_min_share
        model.info["source_trial"] = trial.to_json() | {"min_share": min_share}
    if recommender.cold_items is not None:
        targets = pl.concat([label_train, label_valid])["item_id"]
        target_items = recommender.catalog.indices(targets.to_list())
        cold_share = label_cold_share(
            target_items, recommender.cold_items, config.cold_share_min, config.cold_share_max
        )
        model.info["cold_share"] = cold_share
    if config.fallback and fallback["fallback_source"] is not None:
        model.info["fallback_source"] = fallback["fallback_source"]
    return model


def best_single_source(model: Ranker, valid: pl.DataFrame) -> dict[str, Any]:
    """NDCG@10 on the validation candidates of the model and of each source's own order; the
    source to fall back to when one ranks better than the model (else None)."""
    sources = [name.removeprefix("cand_").removesuffix("_rank") for name in model.features]
    sources = [name for name in sources if f"cand_{name}_rank" in model.features]
    model_ndcg = ndcg_at(valid, model.predict(valid))
    by_source = {
        name: ndcg_at(valid, -valid[f"cand_{name}_rank"].fill_null(np.inf).fill_nan(np.inf).to_numpy())
        for name in sources
    }
    best = max(by_source, key=by_source.__getitem__, default=None)
    beaten = best is not None and by_source[best] > model_ndcg
    return {
        "model_ndcg@10": model_ndcg,
        "source_ndcg@10": by_source,
        "fallback_source": best if beaten else None,
    }
