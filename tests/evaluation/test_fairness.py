"""Exposure analysis on tiny arrays with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from recsys.catalog import Histories, ItemCatalog
from recsys.evaluation.fairness import (
    AGE_LABELS,
    DAY_S,
    NO_CATEGORY,
    UNKNOWN,
    ItemGroups,
    calibration_kl,
    fairness_report,
    fairness_summary,
    gini,
    group_shares,
    long_tail_mask,
    popularity_deciles,
)

NOW = 1_700_000_000


def test_gini_known_answers() -> None:
    assert gini(np.array([3, 3, 3, 3])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # (n - 1) / n: one item takes every slot
    assert gini(np.array([4, 1, 3, 2])) == pytest.approx(0.25)  # sum((2i - n - 1) x_(i)) / (n sum x) = 10/40
    assert gini(np.array([0, 0])) == 0.0 and gini(np.array([])) == 0.0


def test_long_tail_is_outside_the_top_20_percent_ties_in_catalog_order() -> None:
    counts = np.array([1, 50, 0, 7, 7, 3, 2, 9, 0, 4])  # head: ceil(0.2 * 10) = 2 items, 50 and 9
    assert np.flatnonzero(~long_tail_mask(counts)).tolist() == [1, 7]
    tied = np.full(5, 3)  # head = ceil(1.0) = 1 item: the first in catalog order
    assert long_tail_mask(tied).tolist() == [False, True, True, True, True]


def test_popularity_deciles_and_exposure_by_decile() -> None:
    counts = np.arange(20, 0, -1)  # item i has 20 - i events: items 0, 1 are decile 0, items 18, 19 decile 9
    deciles = popularity_deciles(counts)
    assert deciles.tolist() == [i // 2 for i in range(20)]
    topk = np.array([[0, 1, 19, -1], [2, 0, -1, -1]])  # 5 slots: 3 in D1, 1 in D2, 1 in D10; padding ignored
    shares = group_shares(topk[topk >= 0], deciles, 10)
    assert shares.tolist() == pytest.approx([0.6, 0.2, 0, 0, 0, 0, 0, 0, 0, 0.2])


def _categories(rows: list[list[int]], n_categories: int) -> np.ndarray:
    matrix = np.zeros((len(rows), n_categories))
    for item, cats in enumerate(rows):
        matrix[item, cats] = 1.0 / len(cats) if cats else 0.0
    return matrix


def test_calibration_kl_known_answers() -> None:
    from scipy import sparse

    # items 0, 1: category A; 2: category B; 3: both (half each); 4: no category
    item_categories = sparse.csr_matrix(_categories([[0], [0], [1], [0, 1], []], 2))
    histories = [np.array([0, 2]), np.array([3]), np.array([4]), np.array([0, 2])]
    topk = np.array(
        [
            [1, 1, -1],  # p = (.5, .5), q = (1, 0): q~ = (.995, .005)
            [0, 2, -1],  # p = (.5, .5), q = (.5, .5): perfectly calibrated
            [0, 1, -1],  # history without a categorized item: not counted
            [4, -1, -1],  # list without a categorized item: not counted
        ]
    )
    kl, users = calibration_kl(histories, topk, item_categories, k=2)
    first = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    assert users == 2
    assert kl == pytest.approx(first / 2)
    # k cuts the lists: only the first slot counts
    assert calibration_kl(histories[1:2], np.array([[0, 2]]), item_categories, k=1)[0] == pytest.approx(
        0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    )


def test_item_groups_category_age_and_reference_shares() -> None:
    items = pl.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e"],
            "categories": [["Drama", "Comedy"], ["Comedy"], [], None, ["Drama"]],
            "created_at": [NOW - 10 * DAY_S, None, NOW - 400 * DAY_S, None, None],
        },
        schema_overrides={"created_at": pl.Int64},
    )
    catalog = ItemCatalog.from_items(items)
    train = pl.DataFrame(
        {
            "user_id": ["u", "u", "v", "v", "v"],
            "item_id": ["a", "b", "b", "a", "c"],
            # b first seen 100 days before the last training event (NOW): "90d-1y"
            "ts": [NOW - 200 * DAY_S, NOW - 100 * DAY_S, NOW - 50 * DAY_S, NOW, NOW - 5 * DAY_S],
        }
    )
    groups = ItemGroups.build(items, catalog, train)
    category = groups.dimensions["category"]
    assert category.labels == ["Comedy", "Drama", NO_CATEGORY]  # first entry of each item's list
    assert category.codes.tolist() == [1, 0, 2, 2, 1]
    assert category.catalog.tolist() == pytest.approx([0.2, 0.4, 0.4])
    assert category.training.tolist() == pytest.approx([0.4, 0.4, 0.2])  # a: 2 events, b: 2, c: 1

    age = groups.dimensions["age"]
    assert age.labels == [*AGE_LABELS, UNKNOWN]
    # a: created 10 days ago; b: first event 100 days ago; c: created 400 days ago (not its event);
    # d: neither; e: neither
    assert [age.labels[code] for code in age.codes] == ["<30d", "90d-1y", "1-3y", UNKNOWN, UNKNOWN]

    assert groups.long_tail.tolist() == [False, True, True, True, True]  # ceil(0.2 * 5) = 1 head item, a
    reference = groups.reference()
    assert reference["long_tail"] == pytest.approx({"catalog": 0.8, "training": 0.6})


def test_fairness_report_of_two_list_sets_side_by_side() -> None:
    items = pl.DataFrame(
        {"item_id": [str(i) for i in range(10)], "categories": [["x"]] * 5 + [["y"]] * 5},
    )
    catalog = ItemCatalog.from_items(items)
    counts = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # items 0, 1 are the head
    train = pl.DataFrame(
        {
            "user_id": [f"u{n}" for i, c in enumerate(counts) for n in range(c)],
            "item_id": [str(i) for i, c in enumerate(counts) for _ in range(c)],
            "ts": [NOW] * sum(counts),
        }
    )
    groups = ItemGroups.build(items, catalog, train)
    histories = Histories(["u", "v"], [np.array([0, 5]), np.array([1, 6])], [np.zeros(2), np.zeros(2)])
    lists = {
        "popular": np.array([[0, 1], [0, 1]]),  # head only, category x only
        "diverse": np.array([[2, 7], [3, 8]]),  # every slot in the tail, x and y in balance
    }
    section = fairness_report(groups, lists, histories, k=2)
    popular, diverse = section["models"]["popular"], section["models"]["diverse"]
    assert popular["long_tail_share"] == 0.0 and diverse["long_tail_share"] == 1.0
    assert popular["gini"] == pytest.approx(gini(np.array([2, 2, 0, 0, 0, 0, 0, 0, 0, 0])))
    assert popular["gini"] > diverse["gini"]
    assert popular["calibration_kl"] > 0.0 and diverse["calibration_kl"] == pytest.approx(0.0)
    assert popular["exposure"]["popularity_decile"][:2] == [0.5, 0.5]  # one item per decile of 10
    assert sum(diverse["exposure"]["category"]) == pytest.approx(1.0)
    assert section["groups"]["popularity_decile"]["labels"][0] == "D1"
    assert fairness_summary(section)["diverse"] == {
        "gini": diverse["gini"],
        "long_tail_share": 1.0,
        "calibration_kl": diverse["calibration_kl"],
    }
