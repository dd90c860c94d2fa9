"""Places kept for cold items at the tail of a list."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking.cold_slots import label_cold_share, lists_with_cold_slots, slot_count, top_with_cold_slots


def test_cold_candidates_take_the_last_places_in_their_own_order() -> None:
    order = np.array([4, 0, 3, 1, 5, 2, 6])
    cold = np.array([False, False, True, False, False, True, True])  # by position: 2, 5, 6 are cold
    top = top_with_cold_slots(order, cold, k=4, slots=2)
    # the ranker's top 4 (4, 0, 3, 1) has no cold item: its two lowest give way to 5 and 2 (ranked order)
    assert top.tolist() == [4, 0, 5, 2]


def test_cold_items_the_ranker_already_picked_count_towards_the_slots() -> None:
    order = np.array([2, 0, 1, 3, 4])
    cold = np.array([False, False, True, False, True])
    assert top_with_cold_slots(order, cold, k=3, slots=1).tolist() == [2, 0, 1]
    assert top_with_cold_slots(order, cold, k=3, slots=2).tolist() == [2, 0, 4]


def test_without_cold_candidates_the_list_is_the_rankers() -> None:
    order = np.arange(5)
    cold = np.zeros(5, dtype=bool)
    assert top_with_cold_slots(order, cold, k=3, slots=3).tolist() == [0, 1, 2]
    assert top_with_cold_slots(order[:2], cold[:2], k=3, slots=1).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("k", "share", "slots"), [(100, 0.1, 10), (10, 0.04, 0), (10, 0.05, 0), (10, 0.06, 1), (5, 1.0, 5)]
)
def test_slot_count(k: int, share: float, slots: int) -> None:
    assert slot_count(k, share) == slots


def test_label_cold_share_is_the_cold_fraction_between_floor_and_cap() -> None:
    cold = np.array([True, False, False, True])
    assert label_cold_share(np.array([0, 1, 2, 1]), cold, floor=0.0, cap=1.0) == 0.25
    assert label_cold_share(np.array([0, 3, 0, 1]), cold, floor=0.0, cap=0.5) == 0.5
    assert label_cold_share(np.array([1, 2, 1, 2, 1, 0, 1, 2]), cold, floor=0.2, cap=0.5) == 0.2
    assert label_cold_share(np.zeros(0, dtype=np.int64), cold, floor=0.0, cap=1.0) == 0.0
    assert label_cold_share(np.zeros(0, dtype=np.int64), cold, floor=0.1, cap=1.0) == 0.1


def test_lists_of_several_users_each_keep_their_cold_places() -> None:
    # two users' candidates, each block sorted best first: rows 0-3 and 4-6
    cold = np.array([False, False, True, False, False, True, True])
    rows = lists_with_cold_slots(np.array([0, 4, 7]), cold, k=2, slots=1)
    assert rows.tolist() == [0, 2, 4, 5]
