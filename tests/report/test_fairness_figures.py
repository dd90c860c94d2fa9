"""The report's fairness section: one bar per model and group, reference shares as lines, the table."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from recsys.catalog import Histories, ItemCatalog
from recsys.evaluation.fairness import ItemGroups, exposure_frame, fairness_report, summary_frame
from recsys.report.figures import exposure_by_group


@pytest.fixture
def section() -> dict[str, Any]:
    items = pl.DataFrame({"item_id": [f"i{i}" for i in range(10)], "categories": [["a"], ["b"]] * 5})
    events = [(f"u{n}", f"i{i}") for i in range(10) for n in range(10 - i)]
    train = pl.DataFrame({"user_id": [u for u, _ in events], "item_id": [i for _, i in events], "ts": 0})
    groups = ItemGroups.build(items, ItemCatalog.from_items(items), train)
    histories = Histories(["u0", "u1"], [np.array([0]), np.array([1])], [np.zeros(1), np.zeros(1)])
    lists = {"recsys": np.array([[2, 9], [4, 7]]), "popular": np.array([[1, 2], [0, 2]])}
    return fairness_report(groups, lists, histories, k=2)


def test_exposure_by_decile_figure_has_models_as_bars_and_references_as_lines(
    section: dict[str, Any],
) -> None:
    frame = exposure_frame(section, "popularity_decile")
    assert frame.filter(pl.col("model") == "catalog")["share"].to_list() == pytest.approx([0.1] * 10)
    figure = exposure_by_group(frame, "Exposure by popularity decile", "decile")
    traces = {trace.name: trace for trace in figure.data}
    assert [traces[m].type for m in ("recsys", "popular", "catalog", "training events")] == [
        "bar",
        "bar",
        "scatter",
        "scatter",
    ]
    assert list(traces["recsys"].x) == [f"D{d}" for d in range(1, 11)]
    # recsys's slots: items 2, 9, 4, 7 -> deciles D3, D10, D5, D8
    assert list(traces["recsys"].y) == pytest.approx([0, 0, 0.25, 0, 0.25, 0, 0, 0.25, 0, 0.25])


def test_summary_table_lists_models_then_reference_long_tail_shares(section: dict[str, Any]) -> None:
    table = summary_frame(section)
    assert table["model"].to_list() == ["recsys", "popular", "catalog", "training events"]
    assert table["long_tail_share"].to_list()[:3] == pytest.approx([1.0, 0.5, 0.8])
    assert table["gini"][2] is None and table["calibration_users"].to_list()[:2] == [2, 2]
