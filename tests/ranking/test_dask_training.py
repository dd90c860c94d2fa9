"""Ranker training on a Dask LocalCluster (two single-threaded workers) against one process."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest

from recsys.config import DaskConfig, RankingConfig
from recsys.ranking.dask_training import dask_client, fit_on_cluster, fit_ranker, use_dask
from recsys.ranking.ranker import Ranker, ndcg_at

FEATURES = ["f0", "f1", "f2", "f3", "noise"]


def labelled(users: int, seed: int) -> pl.DataFrame:
    """Groups of 20 to 40 candidates whose graded relevance is a noisy mix of four features."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 41, users)
    n = int(sizes.sum())
    x = rng.random((n, 4))
    utility = x @ np.array([1.0, 0.6, 0.3, -0.4]) + 0.25 * rng.standard_normal(n)
    label = (utility > 1.0).astype(np.int64) + (utility > 1.3)
    frame = pl.DataFrame(
        {
            "user_id": np.repeat([f"u{i:05d}" for i in range(users)], sizes),
            "item_idx": np.concatenate([np.arange(size) for size in sizes]),
            **{f"f{j}": x[:, j] for j in range(4)},
            "noise": rng.random(n),
            "label": label,
        }
    )
    useful = frame.group_by("user_id").agg(pl.col("label").max()).filter(pl.col("label") > 0)["user_id"]
    return frame.filter(pl.col("user_id").is_in(useful.implode())).sort("user_id", "item_idx")


CONFIG = RankingConfig(
    n_estimators=150,
    early_stopping_rounds=20,
    learning_rate=0.1,
    min_child_samples=20,
    threads=1,
    dask=DaskConfig(local_workers=2, min_rows=1),
)


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[object]:
    with dask_client(CONFIG.dask) as client:
        yield client


def test_training_goes_to_the_cluster_only_when_configured_and_large() -> None:
    assert use_dask(10, CONFIG)
    assert not use_dask(10, CONFIG.model_copy(update={"dask": DaskConfig(local_workers=2, min_rows=11)}))
    assert not use_dask(10**9, RankingConfig())  # no cluster configured: one process at any size
    assert use_dask(10, RankingConfig(dask=DaskConfig(scheduler="tcp://scheduler:8786", min_rows=10)))


@pytest.mark.slow
@pytest.mark.integration
def test_two_dask_workers_rank_as_well_as_one_process(cluster_client: object) -> None:
    train, valid, test = labelled(1500, 1), labelled(500, 2), labelled(3000, 3)
    single = Ranker.fit(train, valid, FEATURES, CONFIG)
    distributed = fit_on_cluster(cluster_client, train, valid, FEATURES, CONFIG)  # type: ignore[arg-type]
    assert distributed.info["dask_workers"] == 2
    assert 0 < distributed.info["best_iteration"] < CONFIG.n_estimators  # stopped early, as one process
    single_ndcg, dask_ndcg = ndcg_at(test, single.predict(test)), ndcg_at(test, distributed.predict(test))
    assert single_ndcg > 0.7
    assert abs(dask_ndcg - single_ndcg) <= 0.005, (single_ndcg, dask_ndcg)


@pytest.mark.slow
@pytest.mark.integration
def test_fit_ranker_refits_exactly_the_rounds_asked_on_a_local_cluster() -> None:
    model = fit_ranker(labelled(300, 4), None, FEATURES, CONFIG, rounds=12)
    assert model.info["dask_workers"] == 2
    assert model.booster.current_iteration() == model.info["best_iteration"] == 12
