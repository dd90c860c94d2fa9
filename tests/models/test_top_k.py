"""The one tie rule of top-k, whether the scores are dense or sparse entries."""

from __future__ import annotations

import numpy as np

from recsys.models.top_k import best_of_entries, dense_entries, drop_seen

NEG = -np.inf


def test_ties_at_the_kth_score_go_to_the_smaller_items() -> None:
    scores = np.asarray([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]], dtype=np.float32)
    indices, values = best_of_entries(dense_entries(scores, 2), 2, 2)
    np.testing.assert_array_equal(indices, [[1, 2], [0, 1]])
    np.testing.assert_array_equal(values, [[3.0, 3.0], [0.5, 0.5]])


def test_dense_entries_keep_only_k_cells_even_when_most_scores_tie() -> None:
    scores = np.zeros((3, 1000), dtype=np.float32)
    scores[:, 500] = 1.0
    rows, items, _ = dense_entries(scores, 5)
    assert len(rows) == 15
    indices, _ = best_of_entries((rows, items, scores[rows, items]), 3, 5)
    np.testing.assert_array_equal(indices[0], [500, 0, 1, 2, 3])


def test_never_candidates_are_padding_not_answers() -> None:
    scores = np.asarray([[NEG, 2.0, NEG, 1.0], [NEG, NEG, NEG, NEG]], dtype=np.float32)
    indices, values = best_of_entries(dense_entries(scores, 3), 2, 3)
    np.testing.assert_array_equal(indices, [[1, 3, -1], [-1, -1, -1]])
    assert np.isneginf(values[0, 2]) and np.isneginf(values[1]).all()


def test_k_at_least_the_catalog_keeps_every_finite_cell() -> None:
    scores = np.asarray([[0.1, NEG, 0.3]], dtype=np.float32)
    indices, _ = best_of_entries(dense_entries(scores, 5), 1, 5)
    np.testing.assert_array_equal(indices, [[2, 0, -1, -1, -1]])


def test_seen_entries_are_dropped_row_by_row() -> None:
    entries = (np.asarray([0, 0, 1, 1]), np.asarray([4, 7, 4, 7]), np.asarray([1, 2, 3, 4], dtype=np.float32))
    rows, items, values = drop_seen(entries, [np.asarray([7]), np.asarray([4, 4])], 10)
    np.testing.assert_array_equal(rows, [0, 1])
    np.testing.assert_array_equal(items, [4, 7])
    np.testing.assert_array_equal(values, [1, 4])
