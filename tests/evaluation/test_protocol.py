"""Temporal protocols never leak the future, never count seen items, and slice users as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.catalog import ItemCatalog
from recsys.data import Dataset, load_dataset
from recsys.data.demo import DemoSpec, write_demo
from recsys.evaluation import (
    EvalSplit,
    evaluate_scorer,
    evaluate_topk,
    make_split,
    run_baselines,
)
from recsys.models import PopularityScorer
from recsys.models.category import category_codes


@pytest.fixture(scope="module")
def dataset(
    tmp_path_factory: pytest.TempPathFactory, tiny_demo: tuple[pl.DataFrame, pl.DataFrame]
) -> Dataset:
    folder: Path = tmp_path_factory.mktemp("demo")
    items, interactions = tiny_demo
    items.write_parquet(folder / "items.parquet")
    interactions.write_parquet(folder / "interactions.parquet")
    return load_dataset(folder)


@pytest.fixture(scope="module")
def catalog(dataset: Dataset) -> ItemCatalog:
    return ItemCatalog.from_items(dataset.items)


@pytest.fixture(scope="module")
def per_user(dataset: Dataset, catalog: ItemCatalog) -> EvalSplit:
    return make_split(dataset.interactions, catalog, "per_user")


@pytest.fixture(scope="module")
def global_(dataset: Dataset, catalog: ItemCatalog) -> EvalSplit:
    return make_split(dataset.interactions, catalog, "global")


def test_per_user_test_events_never_precede_the_users_train_events(per_user: EvalSplit) -> None:
    last_train = per_user.train.group_by("user_id").agg(pl.col("ts").max().alias("last_train"))
    first_test = per_user.test.group_by("user_id").agg(pl.col("ts").min().alias("first_test"))
    joined = first_test.join(last_train, on="user_id", how="left")
    assert joined["last_train"].null_count() == 0
    assert (joined["first_test"] >= joined["last_train"]).all()
    assert len(per_user.histories) > 100


def test_global_split_respects_the_cutoff(global_: EvalSplit) -> None:
    assert global_.cutoff is not None
    assert global_.train["ts"].max() < global_.cutoff <= global_.test["ts"].min()  # type: ignore[operator]
    test_users = set(global_.test["user_id"].unique().to_list())
    assert test_users == set(global_.histories.user_ids)
    assert all(len(history) > 0 for history in global_.histories.items)


def test_truth_is_the_unseen_test_items_of_each_user(per_user: EvalSplit) -> None:
    indexed = per_user.catalog.with_index(per_user.test)
    for row in (0, 7, 42):
        user = per_user.histories.user_ids[row]
        history = per_user.histories.items[row]
        expected = np.setdiff1d(indexed.filter(pl.col("user_id") == user)["item_idx"].to_numpy(), history)
        np.testing.assert_array_equal(np.sort(per_user.test_items[row]), expected)
        assert not np.isin(per_user.test_items[row], history).any()


def test_seen_items_are_never_recommended(per_user: EvalSplit) -> None:
    scorer = PopularityScorer().fit(per_user.train, per_user.catalog)
    topk, _ = scorer.top_k(per_user.histories, 50)
    for row, history in enumerate(per_user.histories.items):
        assert not np.isin(topk[row], history).any()


def test_an_oracle_scores_perfectly_and_a_shuffled_oracle_does_not(per_user: EvalSplit) -> None:
    oracle = np.full((len(per_user.histories), 10), -1, dtype=np.int64)
    for row, items in enumerate(per_user.test_items):
        oracle[row, : min(10, len(items))] = items[:10]
    metrics = evaluate_topk(oracle, per_user, ks=[10])["all"]
    assert metrics["ndcg@10"] == pytest.approx(1.0)
    assert metrics["recall@10"] == pytest.approx(1.0)
    assert metrics["mrr"] == pytest.approx(1.0)
    wrong_users = np.roll(oracle, 1, axis=0)
    assert evaluate_topk(wrong_users, per_user, ks=[10])["all"]["ndcg@10"] < 0.5


def test_slices_select_what_they_promise(global_: EvalSplit) -> None:
    slices = global_.slices()
    assert list(slices) == ["all", "cold_items", "sparse_users", "heavy_users"]
    train_events = np.asarray([len(h) for h in global_.histories.items])
    rows, truth, _ = slices["cold_items"]
    assert len(rows) > 0
    assert all((global_.item_train_events[items] <= 3).all() and len(items) for items in truth)
    sparse_rows = slices["sparse_users"][0]
    assert len(sparse_rows) > 0 and (train_events[sparse_rows] <= 5).all()
    heavy_rows = slices["heavy_users"][0]
    assert 0.05 * len(train_events) <= len(heavy_rows) <= 0.2 * len(train_events)
    assert train_events[heavy_rows].min() >= np.delete(train_events, heavy_rows).max()


def test_evaluate_scorer_reports_every_slice_with_its_size(global_: EvalSplit) -> None:
    scorer = PopularityScorer().fit(global_.train, global_.catalog)
    result = evaluate_scorer(scorer, global_, ks=(10, 20))
    assert result["all"]["users"] == len(global_.histories)
    assert set(result["all"]) == {
        "users", "ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr", "hr@10", "coverage@10", "novelty@10"
    }  # fmt: skip
    assert result["cold_items"]["users"] == len(global_.slices()["cold_items"][0])


def test_collaborative_baselines_beat_popularity_on_the_demo(per_user: EvalSplit) -> None:
    results = run_baselines(per_user, ["popular", "popular_recent", "ease", "itemknn"], ks=(10, 50))
    assert results["ease"]["all"]["ndcg@10"] > results["popular"]["all"]["ndcg@10"]
    assert results["itemknn"]["all"]["ndcg@10"] > results["popular"]["all"]["ndcg@10"]
    assert results["ease"]["all"]["fit_s"] >= 0


def test_text_baseline_without_vectors_is_a_clear_error(per_user: EvalSplit) -> None:
    with pytest.raises(ValueError, match="needs item_vectors"):
        run_baselines(per_user, ["pretrained_text"])
    with pytest.raises(ValueError, match="needs item_categories"):
        run_baselines(per_user, ["category"])
    with pytest.raises(ValueError, match="unknown baseline 'bpr'"):
        run_baselines(per_user, ["bpr"])


def test_category_baseline_beats_popularity_on_the_demo_whose_users_keep_to_a_few_topics(
    dataset: Dataset, catalog: ItemCatalog, per_user: EvalSplit
) -> None:
    codes = category_codes(dataset.items, catalog)
    results = run_baselines(per_user, ["popular", "category"], ks=(10, 50), item_categories=codes)
    assert results["category"]["all"]["ndcg@10"] > 2 * results["popular"]["all"]["ndcg@10"]


def test_category_recent_baseline_follows_users_whose_tastes_drift(tmp_path: Path) -> None:
    """On a catalog whose users move to other topics, a taste weighed towards the latest events knows
    where they are going (three seeds of this size: 0.36 / 0.38 / 0.42 against 0.25 / 0.26 / 0.31)."""
    write_demo(tmp_path, DemoSpec(users=200, items=300, events=6000, regime="drift"))
    drifting = load_dataset(tmp_path)
    catalog = ItemCatalog.from_items(drifting.items)
    split = make_split(drifting.interactions, catalog, "per_user")
    codes = category_codes(drifting.items, catalog)
    results = run_baselines(split, ["category", "category_recent"], ks=(10,), item_categories=codes)
    assert results["category_recent"]["all"]["ndcg@10"] > 1.2 * results["category"]["all"]["ndcg@10"]
    with pytest.raises(ValueError, match="'category_recent' needs item_categories"):
        run_baselines(split, ["category_recent"])


def test_max_users_keeps_a_seeded_subset(dataset: Dataset, catalog: ItemCatalog, per_user: EvalSplit) -> None:
    small = make_split(dataset.interactions, catalog, "per_user", max_users=20)
    again = make_split(dataset.interactions, catalog, "per_user", max_users=20)
    assert len(small.histories) == 20
    assert small.histories.user_ids == again.histories.user_ids
    assert set(small.histories.user_ids) <= set(per_user.histories.user_ids)
