"""ScorerSource: the CandidateSource contract on top of any scorer, batched or not."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.catalog import Histories, ItemCatalog
from recsys.models import EASEScorer, PopularityScorer
from recsys.retrieval.base import CANDIDATE_COLUMNS
from recsys.retrieval.scorer_source import ScorerSource

CATALOG = ItemCatalog(np.asarray([f"i{n}" for n in range(8)], dtype=object))
# item n is read by 8 - n users: popularity order is i0 > i1 > ... > i7
EVENTS = pl.DataFrame(
    [(f"u{u}", f"i{n}", u * 10 + n) for n in range(8) for u in range(8 - n)],
    schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Int64},
    orient="row",
)
HISTORIES = Histories(
    ["a", "b", "c"],
    [np.asarray([0, 2]), np.asarray([5]), np.zeros(0, dtype=np.int64)],
    [np.asarray([1, 2]), np.asarray([1]), np.zeros(0, dtype=np.int64)],
)


def test_candidates_follow_the_contract_and_skip_seen_items() -> None:
    source = ScorerSource(PopularityScorer().fit(EVENTS, CATALOG))
    frame = source.candidates(HISTORIES, k=3)
    assert dict(frame.schema) == CANDIDATE_COLUMNS
    assert source.name == "popularity"
    by_user = {user: group.sort("rank") for (user,), group in frame.group_by("user_id")}
    assert by_user["a"]["item_idx"].to_list() == [1, 3, 4]
    assert by_user["b"]["item_idx"].to_list() == [0, 1, 2]
    assert by_user["c"]["item_idx"].to_list() == [0, 1, 2]
    for group in by_user.values():
        assert group["rank"].to_list() == [1, 2, 3]
        assert group["score"].is_sorted(descending=True)


def test_seen_items_come_back_when_not_excluded() -> None:
    frame = ScorerSource(PopularityScorer().fit(EVENTS, CATALOG), exclude_seen=False).candidates(
        HISTORIES, k=2
    )
    assert frame.filter(pl.col("user_id") == "a")["item_idx"].to_list() == [0, 1]


def test_small_batches_give_the_same_candidates() -> None:
    scorer = EASEScorer(lambda_=1.0).fit(EVENTS, CATALOG)
    whole = ScorerSource(scorer).candidates(HISTORIES, k=4)
    one_user_at_a_time = ScorerSource(scorer, max_batch_cells=1).candidates(HISTORIES, k=4)
    assert whole.equals(one_user_at_a_time)


def test_items_a_scorer_cannot_score_are_not_candidates() -> None:
    scorer = EASEScorer(lambda_=1.0, max_items=3).fit(EVENTS, CATALOG)  # only i0, i1, i2 are modelled
    indices, scores = scorer.top_k(HISTORIES, k=5)
    assert set(indices[0][indices[0] >= 0]) == {1}
    assert (indices[0][1:] == -1).all() and np.isneginf(scores[0][1:]).all()
    frame = ScorerSource(scorer).candidates(HISTORIES, k=5)
    assert frame.filter(pl.col("user_id") == "a")["item_idx"].to_list() == [1]


def test_k_larger_than_the_catalog_returns_every_unseen_item_once() -> None:
    frame = ScorerSource(PopularityScorer().fit(EVENTS, CATALOG)).candidates(HISTORIES, k=50)
    assert frame.filter(pl.col("user_id") == "a")["item_idx"].to_list() == [1, 3, 4, 5, 6, 7]
    assert frame.filter(pl.col("user_id") == "c").height == 8
    with pytest.raises(ValueError, match="k must be positive"):
        PopularityScorer().fit(EVENTS, CATALOG).top_k(HISTORIES, k=0)
