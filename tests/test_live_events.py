"""Live events (the online store's log, and those the promoted run kept) join the next run's input."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from recsys.live_events import with_live_events

ITEMS = pl.DataFrame({"item_id": ["a", "b", "c"]})
INPUT = pl.DataFrame(
    {"user_id": ["u1", "u2"], "item_id": ["a", "b"], "ts": [10, 20], "rating": [4.0, 3.0]},
    schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Int64, "rating": pl.Float32},
)


def test_live_events_missing_from_the_input_are_added_in_its_schema() -> None:
    logged = pl.DataFrame(
        {
            "user_id": ["u1", "u3", "u3", "u4"],
            "item_id": ["a", "c", "c", "gone"],  # u1/a/10 is in the input; u3's event is logged twice
            "ts": [10, 30, 30, 40],
            "event": ["click"] * 4,
            "weight": [1.0] * 4,
            "rating": [None] * 4,
        }
    )
    carried = pl.DataFrame({"user_id": ["u2"], "item_id": ["c"], "ts": [25], "rating": [5.0]})
    combined, live = with_live_events(INPUT, ITEMS, logged, carried)
    assert combined.schema == INPUT.schema  # the input's columns and dtypes, whatever the log holds
    assert live.select("user_id", "item_id", "ts").rows() == [("u2", "c", 25), ("u3", "c", 30)]
    assert combined.height == INPUT.height + 2  # no duplicate, no event on an item the catalog lacks
    assert live.filter(pl.col("user_id") == "u2")["rating"].to_list() == [5.0]


def test_without_a_store_or_a_previous_run_the_input_is_unchanged() -> None:
    combined, live = with_live_events(INPUT, ITEMS, None, None)
    assert_frame_equal(combined, INPUT)
    assert live.is_empty() and live.schema == INPUT.schema
