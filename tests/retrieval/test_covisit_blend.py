from __future__ import annotations

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.models.covisit import CovisitScorer
from recsys.retrieval.base import CANDIDATE_COLUMNS, CandidateSource
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

    def candidates(self, histories: Histories, k: int) -> pl.DataFrame:
        rows = [
            (user, item, 1.0 / (r + 1), r + 1)
            for user in histories.user_ids
            for r, item in enumerate(self.ranking[:k])
        ]
        return pl.DataFrame(rows, schema=CANDIDATE_COLUMNS, orient="row")


def test_blend_keeps_every_sources_rank_and_score() -> None:
    sources = [Fixed("x", [0, 1, 2]), Fixed("y", [2, 3])]
    frame = blend(sources, histories(("u", ["a"])), per_source_k=3, total_k=10)
    assert set(source_columns(["x", "y"])) <= set(frame.columns)
    by_item = {row["item_idx"]: row for row in frame.iter_rows(named=True)}
    assert sorted(by_item) == [0, 1, 2, 3]
    assert by_item[2]["cand_x_rank"] == 3 and by_item[2]["cand_y_rank"] == 1
    assert by_item[2]["sources"] == ["x", "y"]
    assert by_item[0]["cand_y_rank"] is None and by_item[0]["sources"] == ["x"]


def test_blend_caps_by_best_rank_and_applies_filters() -> None:
    sources = [Fixed("x", [0, 1, 2]), Fixed("y", [4, 3])]
    capped = blend(sources, histories(("u", [])), per_source_k=3, total_k=2)
    assert sorted(capped["item_idx"].to_list()) == [0, 4]  # each source's head survives
    allowed = np.asarray([False, True, True, True, False])
    filtered = blend(sources, histories(("u", [])), per_source_k=3, total_k=10, allowed=allowed)
    assert sorted(filtered["item_idx"].to_list()) == [1, 2, 3]
