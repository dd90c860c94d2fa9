"""The online request (a batch of one) against a batch of many: OnlineBehaviour features and the one
scoring path, Recommender.score_users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from srv_helpers import TinyRun

from feature_store.offline import training_frame
from feature_store.online import get_online_features, get_recommendations, open_online_store
from recsys.assemble import load_recommender
from recsys.catalog import Histories
from recsys.moments import UserMoments
from recsys.online_publish import publish_to_online
from recsys.ranking.behaviour import OnlineBehaviour
from recsys.recommend import Recommender

pytestmark = pytest.mark.slow


def _run_parts(run: TinyRun) -> tuple[Path, Recommender, pl.DataFrame, int]:
    run_dir = run.runs_dir / run.run_id
    recommender = load_recommender(run_dir)
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet")
    return run_dir, recommender, events, int(events["ts"].max()) + 1  # type: ignore[arg-type]


def test_online_behaviour_equals_the_store_and_the_offline_features(runs_copy: TinyRun) -> None:
    run_dir, recommender, events, now = _run_parts(runs_copy)
    publish_to_online(run_dir, recommender.config)
    store = open_online_store(recommender.config.features, runs_copy.runs_dir)
    batch = pl.read_parquet(run_dir / "recommendations" / "recommendations.parquet")
    first = batch["user_id"].min()
    expected = batch.filter(pl.col("user_id") == first).sort("rank")
    pushed = get_recommendations(store, str(first))
    assert [item for item, _ in pushed] == expected["item_id"].to_list()
    assert [score for _, score in pushed] == pytest.approx(expected["score"].to_list())
    assert store.read_meta()["run_id"] == run_dir.name
    behaviour = OnlineBehaviour(store, recommender.items, recommender.config.features)
    item_ids = recommender.items["item_id"].to_list()
    rng = np.random.default_rng(3)
    users = [*events["user_id"].unique().sort().to_list()[:6], "nobody"]
    for user in users:
        own = events.filter(pl.col("user_id") == user)["item_id"].to_list()[:4]  # user×item state too
        candidates = (
            own + [item_ids[i] for i in rng.choice(len(item_ids), 60, replace=False)] + ["not-an-item"]
        )
        rows = pl.DataFrame(
            {"user_id": [user] * len(candidates), "item_id": candidates, "ts": [now] * len(candidates)}
        )
        online = behaviour.features(rows)
        from_store = get_online_features(store, user, candidates, now)
        offline = training_frame(rows, events, recommender.items, recommender.config.features)
        for name in behaviour.names():
            if name == "covisit_score":  # the same weights, summed in another order
                np.testing.assert_allclose(online[name], from_store[name], rtol=1e-12)
                np.testing.assert_allclose(online[name], offline[name], rtol=1e-12)
            else:
                assert online[name].equals(from_store[name]), (user, name)
                assert online[name].equals(offline[name]), (user, name)
    store.close()


def test_score_user_equals_the_batch_path(runs_copy: TinyRun) -> None:
    """Same recommender, same (online) behaviour: a user ranked alone (a request) gets what the same
    user gets in a batch of many (arrays and the frames made of them), with and without a filter."""
    run_dir, recommender, events, now = _run_parts(runs_copy)
    publish_to_online(run_dir, recommender.config)
    store = open_online_store(recommender.config.features, runs_copy.runs_dir)
    recommender.behaviour = OnlineBehaviour(store, recommender.items, recommender.config.features)
    users = [*events["user_id"].unique().sort().to_list()[:25], "nobody"]
    histories = Histories.from_interactions(events, recommender.catalog, users=users)
    moments = UserMoments.at(users, now)
    allowed = np.zeros(len(recommender.catalog), dtype=bool)
    allowed[::3] = True
    for mask in (None, allowed):
        together = recommender.score_users(histories, moments, mask)
        frame = recommender.scored_candidates(histories, moments, mask)
        top = recommender.recommend(histories, moments, 10, mask)
        for row, user in enumerate(users):
            one = Histories([user], [histories.items[row]], [histories.timestamps[row]])
            fast = recommender.score_user(one, now, mask)
            batch = together.user(row)
            np.testing.assert_array_equal(fast.item_idx, batch.item_idx)
            for column, name in enumerate(fast.feature_names):
                np.testing.assert_allclose(
                    fast.features[:, column], batch.features[:, column], rtol=1e-6, err_msg=name
                )
            np.testing.assert_allclose(fast.scores, batch.scores, rtol=1e-6, atol=1e-9)
            rows = frame.filter(pl.col("user_id") == user)  # the frame is the batch's arrays, exactly
            np.testing.assert_array_equal(batch.item_idx, rows["item_idx"].to_numpy())
            for column, name in enumerate(batch.feature_names):
                expected = rows[name].cast(pl.Float32).to_numpy()
                np.testing.assert_array_equal(batch.features[:, column], expected, err_msg=name)
            np.testing.assert_array_equal(batch.scores, rows["score"].to_numpy())
            assert [fast.sources(i) for i in range(len(fast.item_idx))] == rows["sources"].to_list()
            assert fast.fallback == (len(one.items[0]) == 0)
            best = fast.top(10)
            mine = top.filter(pl.col("user_id") == user)
            assert mine["item_id"].to_list() == recommender.catalog.ids[fast.item_idx[best]].tolist()
            np.testing.assert_allclose(mine["score"].to_numpy(), fast.scores[best], rtol=1e-6, atol=1e-9)
            assert mine["fallback"].to_list() == [fast.fallback] * len(best)
            if mask is not None:
                assert mask[fast.item_idx].all()
    store.close()


def test_online_and_offline_features_give_the_same_top_k(runs_copy: TinyRun) -> None:
    """The request path (online store) and the batch path (event log, point in time) rank alike."""
    run_dir, recommender, events, now = _run_parts(runs_copy)
    publish_to_online(run_dir, recommender.config)
    users = events["user_id"].unique().sort().to_list()[:20]
    histories = Histories.from_interactions(events, recommender.catalog, users=users)
    offline = recommender.recommend(histories, UserMoments.at(users, now), 10)
    store = open_online_store(recommender.config.features, runs_copy.runs_dir)
    recommender.behaviour = OnlineBehaviour(store, recommender.items, recommender.config.features)
    online = recommender.recommend(histories, UserMoments.at(users, now), 10)
    store.close()
    assert online["item_id"].to_list() == offline["item_id"].to_list()
    np.testing.assert_allclose(online["score"].to_numpy(), offline["score"].to_numpy(), rtol=1e-9)


def test_exclude_seen_can_be_turned_off_per_call(runs_copy: TinyRun) -> None:
    _, recommender, events, now = _run_parts(runs_copy)
    user = events["user_id"].sort()[0]
    history = Histories.from_interactions(events, recommender.catalog, users=[user])
    seen = set(history.items[0].tolist())
    assert seen.isdisjoint(recommender.score_user(history, now).item_idx.tolist())
    assert seen & set(recommender.score_user(history, now, exclude_seen=False).item_idx.tolist())
