from __future__ import annotations

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.models.covisit import CovisitScorer
from recsys.retrieval.base import CANDIDATE_COLUMNS, CandidateSource, Retrieved
from recsys.retrieval.blend import blend, source_columns
from recsys.retrieval.scorer_source import ScorerSource

CATALOG = ItemCatalog(np.asarray(["a", "b", "c", "d", "e"], dtype=object))
TABLE = pl.DataFrame(
    {
        "item_id": ["a", "a", "b", "b", "c"],
        "other_item_id": ["b", "c", "d", "a", "e"],
        "weight": [1.0, 0.5, 2.0, 1.0, 3.0],
    }
)


def histories(*rows: tuple[str, list[str]]) -> Histories:
    return Histories(
        [user for user, _ in rows],
        [CATALOG.indices(items) for _, items in rows],
        [np.arange(len(items), dtype=np.int64) for _, items in rows],
    )


def test_covisit_weights_recent_items_higher_and_excludes_seen() -> None:
    source = ScorerSource(CovisitScorer(recent_items=5).from_table(TABLE, CATALOG), name="covisit")
    frame = source.candidates(histories(("u1", ["c", "a"]), ("u2", []), ("u3", ["b"])), k=10)
    u1 = frame.filter(pl.col("user_id") == "u1")
    # From "a" (latest, decay 1): b=1.0 (c is seen). From "c" (decay 1/2): e=1.5.
    assert u1["item_idx"].to_list() == [4, 1]
    assert np.allclose(u1["score"].to_list(), [1.5, 1.0])
    assert u1["rank"].to_list() == [1, 2]
    assert frame.filter(pl.col("user_id") == "u2").height == 0
    assert frame.filter(pl.col("user_id") == "u3")["item_idx"].to_list() == [3, 0]
    assert dict(frame.schema) == CANDIDATE_COLUMNS


class Fixed(CandidateSource):
    """A source returning a fixed ranking for every user (to test the blend alone)."""

    def __init__(self, name: str, ranking: list[int]) -> None:
        super().__init__()
        self.name = name
        self.ranking = ranking

    def retrieve(self, histories: Histories, k: int, exclude_seen: bool | None = None) -> Retrieved:
        found = Retrieved.empty(len(histories), k)
        head = self.ranking[:k]
        found.items[:, : len(head)] = head
        found.scores[:, : len(head)] = [1.0 / (r + 1) for r in range(len(head))]
        return found


def test_blend_keeps_every_sources_rank_and_score() -> None:
    sources = [Fixed("x", [0, 1, 2]), Fixed("y", [2, 3])]
    found = blend(sources, histories(("u", ["a"])), per_source_k=3, total_k=10)
    assert source_columns(["x", "y"]) == ["cand_x_score", "cand_x_rank", "cand_y_score", "cand_y_rank"]
    assert found.items.tolist() == [0, 1, 2, 3]  # ascending item index
    assert found.offsets.tolist() == [0, 4]
    np.testing.assert_array_equal(found.ranks[2], [3, 1])
    np.testing.assert_allclose(found.scores[2], [1 / 3, 1.0])
    assert np.isnan(found.ranks[0, 1]) and np.isnan(found.scores[0, 1])
    np.testing.assert_allclose(found.columns()[3], [np.nan, np.nan, 0.5, 2.0])


def test_blend_caps_by_best_rank_and_applies_filters() -> None:
    sources = [Fixed("x", [0, 1, 2]), Fixed("y", [4, 3])]
    capped = blend(sources, histories(("u", [])), per_source_k=3, total_k=2)
    assert capped.items.tolist() == [0, 4]  # each source's head survives
    allowed = np.asarray([False, True, True, True, False])
    filtered = blend(sources, histories(("u", [])), per_source_k=3, total_k=10, allowed=allowed)
    assert filtered.items.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(filtered.ranks[:, 0], [2, 3, np.nan])  # the sources' own ranks


def test_blend_of_a_batch_equals_each_user_alone() -> None:
    """Users are blended together (flat arrays with offsets), and each user's part is what they get alone."""
    source = ScorerSource(CovisitScorer(recent_items=5).from_table(TABLE, CATALOG), name="covisit")
    sources = [source, Fixed("x", [4, 0, 3, 1])]
    batch = histories(("u1", ["c", "a"]), ("u2", []), ("u3", ["b"]), ("u4", ["a", "b", "c"]))
    together = blend(sources, batch, per_source_k=3, total_k=3)
    for row in range(len(batch)):
        alone = blend(sources, batch.slice(row, row + 1), per_source_k=3, total_k=3)
        part = slice(together.offsets[row], together.offsets[row + 1])
        np.testing.assert_array_equal(together.items[part], alone.items)
        np.testing.assert_array_equal(together.ranks[part], alone.ranks)
        np.testing.assert_array_equal(together.scores[part], alone.scores)
    assert together.user_rows.tolist() == np.repeat(np.arange(4), np.diff(together.offsets)).tolist()


def test_candidates_frame_is_the_retrieved_arrays() -> None:
    frame = Fixed("x", [3, 1]).candidates(histories(("u", []), ("v", ["a"])), k=5)
    assert frame["user_id"].to_list() == ["u", "u", "v", "v"]
    assert frame["item_idx"].to_list() == [3, 1, 3, 1]
    assert frame["rank"].to_list() == [1, 2, 1, 2]
    assert dict(frame.schema) == CANDIDATE_COLUMNS
