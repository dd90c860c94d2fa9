"""Ranking metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation.metrics import (
    coverage_at_k,
    ndcg_at_k,
    novelty_at_k,
    ranking_metrics,
    ratio_interval,
    recall_at_k,
    reciprocal_rank,
    relevance,
)

TOPK = np.asarray([[1, 2, 3], [4, 5, 6], [7, 8, -1]])
TRUTH = [np.asarray([2, 9]), np.asarray([7]), np.asarray([7, 8, 0])]


def test_relevance_marks_hits_and_never_padding() -> None:
    rel = relevance(TOPK, TRUTH)
    np.testing.assert_array_equal(rel, [[0, 1, 0], [0, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(relevance(np.asarray([[0, -1]]), [np.asarray([0])]), [[1, 0]])


def test_ndcg_by_hand() -> None:
    ndcg = ndcg_at_k(relevance(TOPK, TRUTH), TRUTH, k=3)
    # user 0: hit at rank 2 of 2 relevant: (1/log2 3) / (1 + 1/log2 3)
    user0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    # user 2: hits at ranks 1, 2 of 3 relevant: (1 + 1/log2 3) / (1 + 1/log2 3 + 1/log2 4)
    user2 = (1 + 1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5)
    np.testing.assert_allclose(ndcg, [user0, 0.0, user2])
    np.testing.assert_allclose(ndcg_at_k(relevance(TOPK, TRUTH), TRUTH, k=1), [0.0, 0.0, 1.0])


def test_graded_ndcg_uses_the_ideal_order_of_gains() -> None:
    topk = np.asarray([[1, 2]])
    truth, gains = [np.asarray([1, 2])], [np.asarray([1.0, 3.0])]
    rel = relevance(topk, truth, gains)
    np.testing.assert_array_equal(rel, [[1.0, 3.0]])
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    np.testing.assert_allclose(ndcg_at_k(rel, truth, 2, gains), [expected])


def test_recall_is_capped_by_k() -> None:
    rel = relevance(TOPK, TRUTH)
    np.testing.assert_allclose(recall_at_k(rel, TRUTH, 3), [1 / 2, 0.0, 2 / 3])
    # 2 hits in the top 2 with 3 relevant items: min(3, 2) = 2 -> recall 1
    np.testing.assert_allclose(recall_at_k(rel, TRUTH, 2), [1 / 2, 0.0, 1.0])


def test_reciprocal_rank_of_the_first_hit() -> None:
    np.testing.assert_allclose(reciprocal_rank(relevance(TOPK, TRUTH)), [0.5, 0.0, 1.0])


def test_coverage_and_novelty_by_hand() -> None:
    topk = np.asarray([[0, 1], [1, 2]])
    assert coverage_at_k(topk, n_items=10, k=2) == pytest.approx(0.3)
    assert coverage_at_k(topk, n_items=10, k=1) == pytest.approx(0.2)
    item_users = np.asarray([9, 0, 4])
    # -log2((9+1)/10) = 0 and -log2((0+1)/10) = log2 10
    assert novelty_at_k(topk, item_users, n_users=9, k=1) == pytest.approx(math.log2(10) / 2)


def test_ranking_metrics_averages_over_users() -> None:
    metrics = ranking_metrics(TOPK, TRUTH, ks=[1, 3], item_users=np.ones(10), n_train_users=4)
    assert metrics["recall@3"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert metrics["mrr"] == pytest.approx(0.5)
    assert metrics["hr@1"] == pytest.approx(1 / 3)
    assert metrics["coverage@1"] == pytest.approx(0.3)
    assert metrics["novelty@1"] == pytest.approx(-math.log2(2 / 5))
    assert list(metrics) == [
        "ndcg@1",
        "ndcg@3",
        "recall@1",
        "recall@3",
        "mrr",
        "hr@1",
        "coverage@1",
        "novelty@1",
    ]


def test_lists_shorter_than_k_are_an_error() -> None:
    with pytest.raises(ValueError, match="fewer than k=10"):
        ranking_metrics(TOPK, TRUTH, ks=[10], item_users=np.ones(10), n_train_users=4)


def test_ratio_interval_holds_the_ratio_and_narrows_with_more_users() -> None:
    rng = np.random.default_rng(3)
    few_base = rng.random(25)
    few = few_base * 1.3 + rng.normal(0, 0.1, 25)
    low, high = ratio_interval(few, few_base)
    assert low < few.mean() / few_base.mean() < high
    many_base = rng.random(2500)
    many = many_base * 1.3 + rng.normal(0, 0.1, 2500)
    many_low, many_high = ratio_interval(many, many_base)
    assert many_low < 1.3 < many_high
    assert many_high - many_low < (high - low) / 3
    assert ratio_interval(few, few_base) == (low, high)  # seeded: the same interval every time


def test_ratio_interval_is_paired_over_users() -> None:
    # Scores that vary a lot between users but are always exactly twice the baseline's: resampling
    # users in pairs leaves no doubt about the ratio.
    base = np.random.default_rng(4).random(40)
    assert ratio_interval(2 * base, base) == pytest.approx((2.0, 2.0))
    with pytest.raises(ValueError, match="equal 1-d arrays"):
        ratio_interval(base, base[:-1])
