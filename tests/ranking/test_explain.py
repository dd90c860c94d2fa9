"""Explanations on a real recommender (popularity + co-visitation sources, feature store, LightGBM)
built from a tiny demo catalog in memory: exact contributions and every not-a-candidate reason."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.assemble import ranking_feature_names
from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config
from recsys.data import load_dataset
from recsys.data.demo import DemoSpec, write_demo
from recsys.data.splits import global_split, time_at_share
from recsys.models.covisit import CovisitScorer
from recsys.models.popularity import PopularityScorer
from recsys.moments import UserMoments
from recsys.ranking.behaviour import OfflineBehaviour
from recsys.ranking.explain import (
    BIAS,
    CUT_BY_BLEND,
    FILTERED,
    NOT_RETRIEVED,
    RANKED,
    SEEN,
    UNKNOWN_ITEM,
    contribution_column,
    contributions_long,
    explain_item,
    explain_user,
    recent_history,
)
from recsys.ranking.ranker import Ranker
from recsys.ranking.training_set import labelled_candidates
from recsys.recommend import Recommender
from recsys.retrieval.scorer_source import ScorerSource

SPEC = DemoSpec(users=80, items=120, events=4000, topics=4, days=40, seed=11)
PER_SOURCE_K = 12
CANDIDATES_K = 15


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recommender, Histories, int]:
    folder = tmp_path_factory.mktemp("explain")
    write_demo(folder, SPEC)
    dataset = load_dataset(folder)
    items, events = dataset.items, dataset.interactions
    config = Config.model_validate(
        {
            "retrieval": {"sources": ["covisit", "popular"], "per_source_k": PER_SOURCE_K},
            "ranking": {"n_estimators": 20, "early_stopping_rounds": 5, "min_child_samples": 5, "threads": 1},
        }
    )
    config.retrieval.candidates_k = CANDIDATES_K
    catalog = ItemCatalog.from_items(items)
    sources = [
        ScorerSource(CovisitScorer.from_config(config.features).fit(events, catalog), name="covisit"),
        ScorerSource(
            PopularityScorer(days=config.retrieval.popular_days).fit(events, catalog), name="popular"
        ),
    ]
    vectors = np.random.default_rng(0).normal(size=(len(catalog), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    behaviour = OfflineBehaviour(events, items, config.features)
    recommender = Recommender(config, catalog, items, vectors, sources, behaviour, None)
    history, later = global_split(events, time_at_share(events, 0.3))
    train, valid = global_split(later, time_at_share(later, 0.5))
    frames = [
        labelled_candidates(recommender, history, train, None, 0),
        labelled_candidates(recommender, pl.concat([history, train]), valid, None, 0),
    ]
    recommender.ranker = Ranker.fit(*frames, ranking_feature_names(config, behaviour), config.ranking)
    now = int(events["ts"].max()) + 1  # type: ignore[arg-type]
    return recommender, Histories.from_interactions(events, catalog), now


def _active_user(histories: Histories) -> str:
    return max(zip(histories.user_ids, histories.items, strict=True), key=lambda pair: len(pair[1]))[0]


def test_contributions_add_up_and_match_recommend(setup: tuple[Recommender, Histories, int]) -> None:
    recommender, histories, now = setup
    assert recommender.ranker is not None
    user = _active_user(histories)
    explained = explain_user(recommender, user, histories, now, k=10)
    features = recommender.ranker.features

    assert explained["rank"].to_list() == list(range(1, 11))
    total = explained.select(BIAS, *[contribution_column(f) for f in features]).sum_horizontal()
    np.testing.assert_allclose(total.to_numpy(), explained["score"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(recommender.ranker.predict(explained), explained["score"].to_numpy())
    assert explained["score"].is_sorted(descending=True)
    assert set(features) <= set(explained.columns) and explained["title"].null_count() == 0

    recs = recommender.recommend(histories, UserMoments.at(histories.user_ids, now), 10)
    mine = recs.filter(pl.col("user_id") == user).sort("rank")
    assert mine["item_id"].to_list() == explained["item_id"].to_list()
    np.testing.assert_allclose(mine["score"].to_numpy(), explained["score"].to_numpy())

    long = contributions_long(explained, features)
    assert long.height == 10 * len(features)
    first = long.filter(pl.col("rank") == 1)
    assert first["contribution"].abs().is_sorted(descending=True)
    np.testing.assert_allclose(first["contribution"].sum() + explained[BIAS][0], explained["score"][0])


def test_ranked_item_is_compared_with_the_average_candidate(
    setup: tuple[Recommender, Histories, int],
) -> None:
    recommender, histories, now = setup
    user = _active_user(histories)
    everything = explain_user(recommender, user, histories, now, k=None)
    third = everything.row(2, named=True)

    explanation = explain_item(recommender, user, third["item_id"], histories, now)
    assert explanation.status == RANKED and explanation.rank == 3
    assert explanation.candidates == everything.height
    assert explanation.score == pytest.approx(third["score"])
    assert explanation.mean_score == pytest.approx(everything["score"].mean())
    deltas = explanation.contributions["delta"].sum()
    assert deltas == pytest.approx(explanation.score - explanation.mean_score, abs=1e-9)
    ranks = dict(explanation.source_ranks.select("source", "rank").iter_rows())
    assert ranks == {name: third[f"cand_{name}_rank"] for name in ("covisit", "popular")}


def test_every_reason_an_item_is_not_a_candidate(setup: tuple[Recommender, Histories, int]) -> None:
    recommender, histories, now = setup
    user = _active_user(histories)
    catalog = recommender.catalog
    row = histories.user_ids.index(user)
    seen = set(histories.items[row].tolist())

    assert explain_item(recommender, user, "no-such-item", histories, now).status == UNKNOWN_ITEM
    assert (
        explain_item(recommender, user, catalog.ids[histories.items[row][-1]], histories, now).status == SEEN
    )

    candidates = set(explain_user(recommender, user, histories, now, k=None)["item_id"])
    unseen = [i for i in range(len(catalog)) if i not in seen]
    allowed = np.ones(len(catalog), dtype=bool)
    allowed[unseen[0]] = False
    filtered = explain_item(recommender, user, catalog.ids[unseen[0]], histories, now, allowed=allowed)
    assert filtered.status == FILTERED

    # popularity ranks every unseen item: its deep rank says exactly where each non-candidate fell
    alone = Histories([user], [histories.items[row]], [histories.timestamps[row]])
    popular = recommender.sources[1].candidates(alone, len(catalog))
    popular_rank = dict(zip(popular["item_idx"].to_list(), popular["rank"].to_list(), strict=True))
    statuses = set()
    for idx in unseen:
        item_id = catalog.ids[idx]
        if item_id in candidates:
            continue
        explanation = explain_item(recommender, user, item_id, histories, now)
        ranks = dict(explanation.source_ranks.select("source", "rank").iter_rows())
        assert ranks["popular"] == popular_rank[idx]
        within = explanation.source_ranks["within_k"].any()
        assert explanation.status == (CUT_BY_BLEND if within else NOT_RETRIEVED), explanation.reason
        statuses.add(explanation.status)
    assert statuses == {CUT_BY_BLEND, NOT_RETRIEVED}


def test_recent_history_is_newest_first_with_titles(setup: tuple[Recommender, Histories, int]) -> None:
    recommender, histories, _ = setup
    user = _active_user(histories)
    history = recent_history(recommender, histories, user, n=5)
    row = histories.user_ids.index(user)
    expected = recommender.catalog.ids[histories.items[row][-5:][::-1]].tolist()
    assert history["item_id"].to_list() == expected
    assert history["ts"].is_sorted(descending=True) and history["title"].null_count() == 0
    assert recent_history(recommender, histories, "stranger", n=5).height == 0


def test_explaining_needs_a_ranker(setup: tuple[Recommender, Histories, int]) -> None:
    recommender, histories, now = setup
    bare = Recommender(
        recommender.config,
        recommender.catalog,
        recommender.items,
        recommender.item_vectors,
        recommender.sources,
        recommender.behaviour,
        None,
    )
    with pytest.raises(ValueError, match="no ranker"):
        explain_user(bare, histories.user_ids[0], histories, now)
