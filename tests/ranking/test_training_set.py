"""The ranker's training sets: a row budget bounds them whatever the number of users; label users are
placed in time as the batch job places users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.assemble import ranking_feature_names
from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config, RankingConfig
from recsys.data import load_dataset
from recsys.data.demo import DemoSpec, write_demo
from recsys.data.splits import global_split, per_user_split, time_at_share
from recsys.models.category import CategoryScorer, category_codes
from recsys.models.popularity import PopularityScorer
from recsys.moments import Moments, snap_down
from recsys.ranking.behaviour import OfflineBehaviour
from recsys.ranking.training_set import (
    ensemble_size,
    labelled_candidates,
    train_ranker,
    training_users,
    trial_sources,
)
from recsys.recommend import Recommender
from recsys.retrieval.scorer_source import ScorerSource

CANDIDATES_K = 20


def test_training_users_fit_the_row_budget() -> None:
    assert training_users(RankingConfig(max_users=None, max_rows=10_000), 500) == 20
    assert training_users(RankingConfig(max_users=15, max_rows=10_000), 500) == 15
    assert training_users(RankingConfig(max_users=None, max_rows=1_000), 5_000) == 1


def test_the_ensemble_fills_the_row_budget_of_its_members() -> None:
    config = RankingConfig(members=5, member_rows=1_000_000)
    assert ensemble_size(config, 50_000) == 5
    assert ensemble_size(config, 300_000) == 3
    assert ensemble_size(config, 2_000_000) == 1
    assert ensemble_size(RankingConfig(members=1), 10) == 1


def test_the_default_ensemble_of_a_dev_sized_label_set_has_two_members() -> None:
    # The dev dataset's ranker trains on ~300,000 label rows (600 users x 500 candidates); two members
    # keep `recsys run` on it under 10 minutes on 2 cores, a few hundred label users keep five.
    assert ensemble_size(RankingConfig(), 300_000) == 2
    assert ensemble_size(RankingConfig(), 450_000) == 1
    assert ensemble_size(RankingConfig(), 130_000) == 5


def _popular_recommender(folder: Path, config: Config) -> tuple[Recommender, pl.DataFrame]:
    write_demo(folder, DemoSpec(users=300, items=100, events=6000, topics=4, days=40, seed=3))
    dataset = load_dataset(folder)
    items, events = dataset.items, dataset.interactions
    config.retrieval.candidates_k = CANDIDATES_K
    catalog = ItemCatalog.from_items(items)
    popular = PopularityScorer(days=config.retrieval.popular_days).fit(events, catalog)
    vectors = np.eye(len(catalog), 8, dtype=np.float32)
    behaviour = OfflineBehaviour(events, items, config.features)
    sources = [ScorerSource(popular, name="popular")]
    return Recommender(config, catalog, items, vectors, sources, behaviour, None), events


@pytest.mark.parametrize("max_rows", [1_000, 100_000])
def test_training_sets_stay_within_max_rows(tmp_path_factory: pytest.TempPathFactory, max_rows: int) -> None:
    config = Config.model_validate(
        {
            "retrieval": {"sources": ["popular"], "per_source_k": CANDIDATES_K},
            "ranking": {
                "n_estimators": 5,
                "min_child_samples": 5,
                "threads": 1,
                "max_rows": max_rows,
                "member_rows": 3 * max_rows,
            },
        }
    )
    recommender, events = _popular_recommender(tmp_path_factory.mktemp("training_set"), config)
    behaviour = recommender.behaviour
    history, later = global_split(events, time_at_share(events, 0.5))
    train, valid = global_split(later, time_at_share(later, 0.5))
    names = ranking_feature_names(config, behaviour)
    model = train_ranker(recommender, history, train, valid, names, config.ranking)
    users_with_targets = pl.concat([train, valid])["user_id"].n_unique()
    cap = max_rows // CANDIDATES_K
    assert model.info["train_rows"] <= max_rows
    assert model.info["train_groups"] <= min(cap, users_with_targets)
    if cap >= users_with_targets:  # no sampling: every user whose targets were retrieved takes part
        assert model.info["train_groups"] > 50
    # Members of one ensemble share its rows: 3 x max_rows admits at least three.
    members = model.info["members"]
    assert len(members) == ensemble_size(config.ranking, model.info["train_rows"]) >= 3
    assert {member["train_rows"] for member in members} == {model.info["train_rows"]}
    assert model.booster.current_iteration() == sum(member["best_iteration"] for member in members)


@pytest.mark.parametrize("protocol", ["per_user", "global"])
def test_label_users_are_placed_where_the_batch_job_would_place_them(tmp_path: Path, protocol: str) -> None:
    config = Config.model_validate(
        {"split": {"protocol": protocol}, "retrieval": {"sources": ["popular"], "per_source_k": CANDIDATES_K}}
    )
    recommender, events = _popular_recommender(tmp_path, config)
    if protocol == "per_user":
        history, targets = per_user_split(events, 0.2, 5)
    else:
        history, targets = global_split(events, time_at_share(events, 0.8))
    frame = labelled_candidates(recommender, history, targets, None, seed=0)
    placed = dict(frame.select("user_id", "ts").unique().iter_rows())
    first_target = dict(targets.group_by("user_id").agg(pl.col("ts").min()).iter_rows())
    assert placed and all(placed[user] <= first_target[user] for user in placed)  # never after the future
    histories = Histories.from_interactions(history, recommender.catalog, users=sorted(placed))
    assert placed == dict(Moments.of_events(history, per_user=protocol == "per_user").of(histories).moments)
    if protocol == "global":  # everyone at the end of the history, as the batch job's now
        assert set(placed.values()) == {int(history["ts"].max()) + 1}


def test_a_label_users_own_events_all_count_and_the_items_are_read_on_the_grid(tmp_path: Path) -> None:
    """Per-user moments: the user's features count every event of theirs (the session they are in,
    which the next events continue), the items' state is read at the grid point before (a push)."""
    retrieval = {"sources": ["popular"], "per_source_k": CANDIDATES_K}
    config = Config.model_validate({"split": {"protocol": "per_user"}, "retrieval": retrieval})
    recommender, events = _popular_recommender(tmp_path, config)
    history, targets = per_user_split(events, 0.2, 5)
    frame = labelled_candidates(recommender, history, targets, None, seed=0)
    own = dict(history.group_by("user_id").len().iter_rows())
    counted = dict(frame.group_by("user_id").agg(pl.col("user_events_all").first()).iter_rows())
    assert counted == {user: own[user] for user in counted}
    grid = Moments.of_events(history, per_user=True).grid
    assert grid is not None
    rows = frame.select("user_id", "item_id", "ts", "item_events_all").unique().sort("user_id", "item_id")
    items_then = snap_down(rows["ts"].to_numpy(), grid)
    assert (items_then < rows["ts"].to_numpy()).sum() > rows.height // 2  # the grid lies before most
    expected = [
        events.filter((pl.col("item_id") == item) & (pl.col("ts") < then)).height
        for item, then in zip(rows["item_id"], items_then, strict=True)
    ]
    assert rows["item_events_all"].to_list() == expected


def test_label_users_are_never_described_after_their_first_label(tmp_path: Path) -> None:
    """``recommend.as_of: now`` under the per-user split: the history's now lies after most label users'
    labels (other users' events go on), and placing them there let the ranker read its labels off the
    features (validation NDCG@10 1.0 on the generated shop, 0.014 on its test users)."""
    config = Config.model_validate(
        {
            "split": {"protocol": "per_user"},
            "recommend": {"as_of": "now"},
            "retrieval": {"sources": ["popular"], "per_source_k": CANDIDATES_K},
        }
    )
    recommender, events = _popular_recommender(tmp_path, config)
    history, targets = per_user_split(events, 0.2, 5)
    frame = labelled_candidates(recommender, history, targets, None, seed=0)
    placed = dict(frame.select("user_id", "ts").unique().iter_rows())
    first_target = dict(targets.group_by("user_id").agg(pl.col("ts").min()).iter_rows())
    now = int(history["ts"].max()) + 1
    assert placed == {user: min(now, first_target[user]) for user in placed}
    assert sum(first_target[user] < now for user in placed) > len(placed) // 2  # the case that leaked
    positives = frame.filter(pl.col("label") > 0)
    assert positives.height and positives["ui_seen"].max() == 0  # no label counted as already seen


@pytest.mark.parametrize(("share_of_ratio", "joins"), [(0.99, True), (1.01, False)])
def test_a_trial_source_joins_the_ranker_only_where_it_ranks_near_the_best_source(
    tmp_path: Path, share_of_ratio: float, joins: bool
) -> None:
    config = Config.model_validate(
        {
            "retrieval": {
                "sources": ["popular"],
                "trial_sources": ["category"],
                "per_source_k": CANDIDATES_K,
            },
            "ranking": {"n_estimators": 5, "min_child_samples": 5, "threads": 1, "members": 1},
        }
    )
    recommender, events = _popular_recommender(tmp_path, config)
    history, later = global_split(events, time_at_share(events, 0.5))
    train, valid = global_split(later, time_at_share(later, 0.5))
    catalog = recommender.catalog
    popular = PopularityScorer(days=config.retrieval.popular_days).fit(history, catalog)
    category = CategoryScorer(category_codes(recommender.items, catalog)).fit(history, catalog)
    recommender.sources = [ScorerSource(popular, name="popular"), ScorerSource(category, name="category")]
    measured = trial_sources(recommender, history, pl.concat([train, valid]), None, config.ranking.seed)
    ratio = measured.ndcg["category"] / measured.ndcg["popular"]
    assert 0 < ratio < 10
    # Just below its measured share of the best default source's NDCG@10 it joins, just above it stays out.
    config.retrieval.trial_min_share = ratio * share_of_ratio
    names = ranking_feature_names(config, recommender.behaviour, ["popular", "category"])
    model = train_ranker(recommender, history, train, valid, names, config.ranking)
    assert model.info["source_trial"]["ndcg@10"] == measured.ndcg
    assert model.info["sources"] == (["popular", "category"] if joins else ["popular"])
    assert ("cand_category_rank" in model.features) == joins
    assert "cand_popular_rank" in model.features and len(recommender.sources) == 2  # the caller's intact


def test_without_trial_sources_every_source_stays_unjudged(tmp_path: Path) -> None:
    config = Config.model_validate({"retrieval": {"sources": ["popular"], "per_source_k": CANDIDATES_K}})
    recommender, events = _popular_recommender(tmp_path, config)
    history, targets = global_split(events, time_at_share(events, 0.8))
    trial = trial_sources(recommender, history, targets, None, seed=0)
    assert trial.chosen == ["popular"] and trial.ndcg == {}
