"""Cold items' places in a real run's lists: the batch and the online path keep the same ones."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from srv_helpers import TinyRun

from feature_store.online import open_online_store
from recsys.assemble import load_recommender
from recsys.catalog import Histories
from recsys.moments import UserMoments
from recsys.online_publish import publish_to_online
from recsys.ranking.behaviour import OnlineBehaviour

pytestmark = pytest.mark.slow


def test_batch_and_online_lists_keep_the_same_cold_places(runs_copy: TinyRun) -> None:
    run_dir = runs_copy.runs_dir / runs_copy.run_id
    recommender = load_recommender(run_dir)
    assert recommender.cold_items is not None and recommender.cold_items.any()
    measured = recommender.ranker.info["cold_share"]  # type: ignore[union-attr]
    assert recommender.config.ranking.cold_share_min <= measured <= recommender.config.ranking.cold_share_max
    ranking = recommender.config.ranking.model_copy(update={"cold_share": 0.3})
    recommender.config = recommender.config.model_copy(update={"ranking": ranking})
    publish_to_online(run_dir, recommender.config)
    store = open_online_store(recommender.config.features, runs_copy.runs_dir)
    recommender.behaviour = OnlineBehaviour(store, recommender.items, recommender.config.features)
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet")
    now = int(events["ts"].max()) + 1  # type: ignore[arg-type]
    users = events["user_id"].unique().sort().to_list()[:15]
    histories = Histories.from_interactions(events, recommender.catalog, users=users)
    k = 20
    batch = recommender.recommend(histories, UserMoments.at(users, now), k)
    for row, user in enumerate(users):
        one = Histories([user], [histories.items[row]], [histories.timestamps[row]])
        fast = recommender.score_user(one, now)
        online = recommender.catalog.ids[fast.item_idx[fast.top(k)]].tolist()
        assert online == batch.filter(pl.col("user_id") == user)["item_id"].to_list()
        cold = recommender.cold_items[fast.item_idx[fast.top(k)]]
        assert cold.sum() >= min(6, int(recommender.cold_items[fast.item_idx].sum()))
        plain = np.lexsort((fast.item_idx, -fast.scores))[:k]
        assert cold.sum() >= recommender.cold_items[fast.item_idx[plain]].sum()
    store.close()
