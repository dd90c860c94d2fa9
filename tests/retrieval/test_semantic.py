from __future__ import annotations

from functools import partial

import numpy as np

from recsys.catalog import Histories
from recsys.embeddings import user_vectors_from_history
from recsys.index import ExactIndex, FlatIndex
from recsys.retrieval.base import CANDIDATE_COLUMNS
from recsys.retrieval.semantic import RESCORE_BLOCK, SemanticSource

# Items 0-2 point along x, 3-5 along y; item 6 is in between.
ITEM_VECTORS = np.asarray(
    [[1, 0], [0.99, 0.14], [0.98, 0.2], [0, 1], [0.14, 0.99], [0.2, 0.98], [0.7, 0.7]], dtype=np.float32
)
ITEM_VECTORS /= np.linalg.norm(ITEM_VECTORS, axis=1, keepdims=True)
HISTORIES = Histories(
    ["x-fan", "y-fan", "new"],
    [np.asarray([0]), np.asarray([3, 4]), np.zeros(0, dtype=np.int64)],
    [np.asarray([1]), np.asarray([1, 2]), np.zeros(0, dtype=np.int64)],
)


def source(exclude_seen: bool = True, index_cls: type = ExactIndex) -> SemanticSource:
    index = index_cls(2)
    index.build(ITEM_VECTORS)
    return SemanticSource(
        index, partial(user_vectors_from_history, ITEM_VECTORS, half_life_events=5.0), exclude_seen
    )


def test_candidates_follow_the_user_vector_and_skip_seen_items() -> None:
    frame = source().candidates(HISTORIES, 3)
    assert dict(frame.schema) == CANDIDATE_COLUMNS
    by_user = {
        u: i
        for u, i in frame.sort("rank").group_by("user_id", maintain_order=True).agg("item_idx").iter_rows()
    }
    assert by_user == {"x-fan": [1, 2, 6], "y-fan": [5, 6, 2]}
    assert frame.filter(frame["user_id"] == "x-fan")["rank"].to_list() == [1, 2, 3]
    for _, scores in frame.sort("rank").group_by("user_id").agg("score").iter_rows():
        assert scores == sorted(scores, reverse=True)


def test_users_without_history_get_no_candidates_and_seen_can_be_kept() -> None:
    frame = source(exclude_seen=False, index_cls=FlatIndex).candidates(HISTORIES, 2)
    assert "new" not in frame["user_id"].to_list()
    assert frame.filter(frame["user_id"] == "x-fan")["item_idx"].to_list()[0] == 0


def test_k_beyond_catalog_returns_what_exists() -> None:
    frame = source().candidates(HISTORIES, 50)
    assert frame.filter(frame["user_id"] == "x-fan").height == 6


def test_an_allow_list_restricts_search_to_those_items_as_cold_text_does() -> None:
    base = source()
    cold = SemanticSource(base.index, base.user_vectors, allow=np.asarray([2, 5]), name="cold_text")
    frame = cold.candidates(HISTORIES, 3)
    by_user = dict(frame.sort("rank").group_by("user_id", maintain_order=True).agg("item_idx").iter_rows())
    assert by_user == {"x-fan": [2, 5], "y-fan": [5, 2]}  # only allowed items, nearest first
    assert cold.name == "cold_text" and base.name == "semantic"


def test_rescored_sources_give_a_user_alone_what_the_user_gets_in_a_batch() -> None:
    """A request (one query) and a batch job (a matrix product, rescored in blocks of users) score
    alike, to the last bit."""
    users = 2 * RESCORE_BLOCK + 5
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((400, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    histories = Histories(
        [f"u{i}" for i in range(users)],
        [rng.choice(400, size=5, replace=False) for _ in range(users)],
        [np.arange(5) for _ in range(users)],
    )
    for index_cls in (ExactIndex, FlatIndex):
        index = index_cls(32)
        index.build(vectors)
        user_vectors = partial(user_vectors_from_history, vectors, half_life_events=5.0)
        semantic = SemanticSource(index, user_vectors, item_vectors=vectors)
        together = semantic.retrieve(histories, 50)
        for row in range(len(histories)):
            alone = semantic.retrieve(histories.slice(row, row + 1), 50)
            np.testing.assert_array_equal(alone.items[0], together.items[row])
            np.testing.assert_array_equal(alone.scores[0], together.scores[row])
        plain = SemanticSource(index, user_vectors).retrieve(histories, 50)
        assert (plain.items == together.items).mean() > 0.95  # the same lists, up to near-ties
