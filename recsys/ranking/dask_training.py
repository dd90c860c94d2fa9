"""Ranker training on a Dask cluster (``lightgbm.dask``) when the label set outgrows one machine.

``ranking.dask`` names a running scheduler (``scheduler``) or a number of local single-threaded
workers (``local_workers``, a ``LocalCluster``); training goes there only from ``min_rows`` label
rows on, below it :meth:`Ranker.fit` trains in this process. LightGBM trains data-parallel: each
worker holds whole users' candidate groups (lambdarank needs a group on one worker) and the workers
exchange histograms every round, so the model is the single-process one up to bagging and bin
boundaries, which each worker draws from its own rows (tested: NDCG@10 within 0.005).

What is distributed is the boosting: the labelled candidates are built in this process and
scattered to the workers. ``lightgbm.dask`` has no early stopping, so with a validation set the
cluster grows ``n_estimators`` trees and the number kept is chosen here with the same rule
(:class:`~recsys.ranking.ranker.EarlyStopping`), scoring the trees one by one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.config import DaskConfig, RankingConfig
from recsys.ranking.ranker import (
    EarlyStopping,
    Ranker,
    feature_matrix,
    group_sizes,
    lambdarank_params,
    ndcg_at,
)

if TYPE_CHECKING:
    from distributed import Client


def use_dask(rows: int, config: RankingConfig) -> bool:
    """A cluster is configured and the label set is big enough to be worth it."""
    cluster = config.dask.scheduler is not None or config.dask.local_workers > 0
    return cluster and rows >= config.dask.min_rows


def fit_ranker(
    train: pl.DataFrame,
    valid: pl.DataFrame | None,
    features: list[str],
    config: RankingConfig,
    rounds: int | None = None,
) -> Ranker:
    """:meth:`Ranker.fit` (same arguments), on the Dask cluster when :func:`use_dask` says so."""
    if not use_dask(train.height, config):
        return Ranker.fit(train, valid, features, config, rounds=rounds)
    with dask_client(config.dask) as client:
        return fit_on_cluster(client, train, valid, features, config, rounds)


@contextmanager
def dask_client(config: DaskConfig) -> Iterator[Client]:
    """A client of the configured scheduler, or of a LocalCluster started (and stopped) for this fit."""
    from distributed import Client, LocalCluster

    if config.scheduler is not None:
        with Client(config.scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=config.local_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _partitions(groups: np.ndarray, parts: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(rows, groups) per partition: about equal rows, never a group cut in two."""
    ends = np.cumsum(groups)
    cuts = np.searchsorted(ends, np.linspace(0, ends[-1], parts + 1)[1:-1], side="left") + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(groups)]]))
    spans = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    group_chunks = tuple(b - a for a, b in spans)
    row_chunks = tuple(int(groups[a:b].sum()) for a, b in spans)
    return row_chunks, group_chunks


def fit_on_cluster(
    client: Client,
    train: pl.DataFrame,
    valid: pl.DataFrame | None,
    features: list[str],
    config: RankingConfig,
    rounds: int | None = None,
) -> Ranker:
    """Lambdarank with the parameters of :meth:`Ranker.fit`, grown by ``client``'s workers."""
    import dask.array as da
    import lightgbm as lgb

    workers = len(client.scheduler_info()["workers"])
    groups = group_sizes(train)
    row_chunks, group_chunks = _partitions(groups, workers)
    matrix = feature_matrix(train, features)
    model = lgb.DaskLGBMRanker(client=client, **lambdarank_params(config, rounds))
    model.fit(
        da.from_array(matrix, chunks=(row_chunks, matrix.shape[1])),
        da.from_array(train["label"].to_numpy(), chunks=(row_chunks,)),
        group=da.from_array(groups, chunks=(group_chunks,)),
        feature_name=features,
    )
    booster = model.booster_
    info: dict[str, Any] = {
        "train_rows": train.height,
        "train_groups": len(groups),
        "dask_workers": workers,
    }
    if valid is None:
        return Ranker(booster, features, {**info, "best_iteration": booster.current_iteration()})
    rule = EarlyStopping(config.early_stopping_rounds, config.early_stopping_window)
    best_iteration, best_ndcg = _early_stopped(booster, valid, features, rule)
    kept = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration))
    info |= {"best_iteration": best_iteration, "valid_ndcg@10": best_ndcg, "valid_rows": valid.height}
    return Ranker(kept, features, info)


def _early_stopped(
    booster: Any, valid: pl.DataFrame, features: list[str], rule: EarlyStopping
) -> tuple[int, float]:
    """(trees kept, their validation NDCG@10): the early-stopping rule of one process, tree by tree."""
    matrix = feature_matrix(valid, features)
    scores = np.zeros(valid.height, dtype=np.float64)
    for iteration in range(booster.current_iteration()):
        scores += booster.predict(matrix, start_iteration=iteration, num_iteration=1, raw_score=True)
        if rule.update(ndcg_at(valid, scores)):
            break
    return rule.best_iteration, rule.best_score
