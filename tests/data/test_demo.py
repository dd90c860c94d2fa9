from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from recsys.data.demo import DemoSpec, generate_demo

SPEC = DemoSpec(users=150, items=200, events=4000, topics=12, seed=11)


def test_demo_is_deterministic_and_in_the_contract() -> None:
    items, events = generate_demo(SPEC)
    again_items, again_events = generate_demo(SPEC)
    assert_frame_equal(items, again_items)
    assert_frame_equal(events, again_events)
    assert events.height == SPEC.events
    assert set(events["item_id"].unique()) <= set(items["item_id"])
    assert events["ts"].is_sorted()
    assert (events["ts"].max() - events["ts"].min()) <= SPEC.days * 86_400  # type: ignore[operator]
    sentences = items["text"].str.count_matches(r"\.").to_list()
    assert min(sentences) >= 2 and max(sentences) <= 4


def test_demo_has_skew_cold_items_and_topic_structure() -> None:
    items, events = generate_demo(SPEC)
    counts = events.group_by("item_id").len().sort("len", descending=True)["len"]
    top_share = counts.head(SPEC.items // 10).sum() / counts.sum()
    assert top_share > 0.3  # Zipf-skewed popularity
    start = events["ts"].min()
    assert items.filter(pl.col("created_at") > start).height > SPEC.items // 10  # items keep arriving
    # No event precedes its item's arrival.
    joined = events.join(items.select("item_id", "created_at"), on="item_id")
    assert (joined["ts"] >= joined["created_at"]).all()
    # Users' events concentrate on few topics (tastes), far from uniform over 12 topics.
    topics = joined.join(items.select("item_id", "categories"), on="item_id").with_columns(
        pl.col("categories").list.first().alias("topic")
    )
    per_user = topics.group_by("user_id").agg(pl.col("topic").n_unique().alias("n"), pl.len().alias("events"))
    busy = per_user.filter(pl.col("events") >= 30)
    assert busy["n"].mean() < 9  # type: ignore[operator]
