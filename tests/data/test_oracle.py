from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.catalog import ItemCatalog
from recsys.data.demo import START_TS, TOPICS, DemoSpec, generate_demo, regime_world
from recsys.data.oracle import Oracle, oracle_topk
from recsys.evaluation.protocol import evaluate_topk, make_split, run_baselines

SPEC = DemoSpec(users=300, items=400, events=12000, topics=12, seed=3, regime="sessions")


@pytest.fixture(scope="module")
def sessions_catalog() -> tuple[pl.DataFrame, pl.DataFrame]:
    return generate_demo(SPEC)


def _index(ids: pl.Series) -> np.ndarray:
    return ids.str.slice(1).cast(pl.Int64).to_numpy()


def test_the_world_is_the_one_the_events_were_drawn_from(
    sessions_catalog: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    items, events = sessions_catalog
    world = regime_world(SPEC)
    order = _index(items["item_id"])
    names = np.asarray(list(TOPICS)[: SPEC.topics], dtype=object)
    assert items["categories"].list.first().to_list() == names[world.topic[order]].tolist()
    assert (items["created_at"].to_numpy() == START_TS + world.created[order]).all()
    # A session moves to the previous item's sequel with probability shape.sequel (0.7 here): the
    # world's sequels must be the ones the events follow, far above any other next item.
    pairs = events.sort("user_id", "ts", maintain_order=True).with_columns(
        pl.col("item_id").shift(1).alias("previous"), pl.col("user_id").shift(1).alias("previous_user")
    )
    pairs = pairs.filter(pl.col("previous_user") == pl.col("user_id"))
    follows = world.sequel[_index(pairs["previous"])] == _index(pairs["item_id"])
    assert follows.mean() > 0.5
    # Each user's events stay within the topics of their two audiences.
    users = _index(events["user_id"])
    liked = np.concatenate(
        [
            world.audience_topics[world.first_audience[users]],
            world.audience_topics[world.last_audience[users]],
        ],
        axis=1,
    )
    assert (liked == world.topic[_index(events["item_id"])][:, None]).any(axis=1).all()


def test_the_default_catalog_has_no_world() -> None:
    with pytest.raises(ValueError, match="regime"):
        regime_world(DemoSpec())


def test_a_topic_draw_is_a_distribution_over_the_topics_released_items() -> None:
    world = regime_world(SPEC)
    oracle = Oracle(world)
    t = world.horizon / 2
    draw = oracle.topic_draw(0, t)
    assert draw.sum() == pytest.approx(1.0)
    assert (draw[world.topic != 0] == 0).all()
    assert (draw[world.created > t] == 0).all()


def test_the_oracle_ranks_the_future_better_than_the_best_baseline(
    sessions_catalog: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    items, events = sessions_catalog
    catalog = ItemCatalog.from_items(items)
    split = make_split(events, catalog, "per_user")
    counts = dict(split.test.group_by("user_id").len().iter_rows())
    future = np.asarray([counts[user] for user in split.histories.user_ids], dtype=np.float64)
    world = regime_world(SPEC)
    ndcg = {}
    for knowledge in ("full", "observable"):
        topk = oracle_topk(world, catalog.ids, split.histories, future, 100, True, knowledge=knowledge)
        for row, seen in enumerate(split.histories.items):
            assert not np.isin(topk[row], seen).any()
        ndcg[knowledge] = evaluate_topk(topk, split)["all"]["ndcg@10"]
    baselines = run_baselines(split, ["markov", "covisit", "popular"])
    best = max(metrics["all"]["ndcg@10"] for metrics in baselines.values())
    assert ndcg["full"] > best * 1.05
    assert ndcg["observable"] > best
