from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.config import EncoderConfig
from recsys.encoder.pairs import build_pairs, retrieval_queries
from recsys.encoder.text import context_texts, item_context_parts, item_texts

ITEMS = pl.DataFrame(
    {
        "item_id": ["a", "b", "c", "d"],
        "title": ["Alpha", "Beta", "Gamma", "Delta"],
        "text": ["first text", None, "third text", "fourth"],
        "categories": [["x", "y"], [], ["z"], None],
    }
)
# u1: a -> b -> c -> d; u2: c -> c -> a (a repeat is no item pair)
EVENTS = pl.DataFrame(
    {
        "user_id": ["u1", "u1", "u1", "u1", "u2", "u2", "u2"],
        "item_id": ["a", "b", "c", "d", "c", "c", "a"],
        "ts": [10, 20, 30, 40, 15, 25, 35],
    }
)


def test_item_texts_formats_columns_and_joins_lists() -> None:
    assert item_texts(ITEMS, "{title} [{categories}]: {text}") == [
        "Alpha [x, y]: first text",
        "Beta []:",
        "Gamma [z]: third text",
        "Delta []: fourth",
    ]


def test_item_template_names_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['genre'\]"):
        item_texts(ITEMS, "{title} {genre}")
    with pytest.raises(ValueError, match="must be column names"):
        item_texts(ITEMS, "{0}")


def test_context_is_newest_first_and_capped() -> None:
    parts = item_context_parts(ITEMS, text_chars=0)
    assert context_texts(parts, [np.asarray([0, 1, 2]), np.asarray([], dtype=np.int64)], 2) == [
        "Gamma | Beta",
        "",
    ]
    with_text = item_context_parts(ITEMS, text_chars=5)
    assert with_text[0] == "Alpha: first" and with_text[1] == "Beta"


def test_pairs_are_next_item_contexts_plus_item_pairs() -> None:
    pairs = build_pairs(ITEMS, EVENTS, EncoderConfig(context_items=2, item_pairs=True), "{title}")
    got = sorted(zip(pairs.anchors, pairs.positives, pairs.is_context.tolist(), strict=True))
    assert got == sorted(
        [
            ("Alpha", "Beta", True),
            ("Beta | Alpha", "Gamma", True),
            ("Gamma | Beta", "Delta", True),
            ("Gamma", "Gamma", True),
            ("Gamma | Gamma", "Alpha", True),
            ("Alpha", "Beta", False),
            ("Beta", "Gamma", False),
            ("Gamma", "Delta", False),
            ("Gamma", "Alpha", False),
        ]
    )
    assert (np.diff(pairs.ts) >= 0).all()


def test_max_pairs_keeps_the_most_recent() -> None:
    pairs = build_pairs(
        ITEMS, EVENTS, EncoderConfig(context_items=1, item_pairs=False, max_pairs=2), "{title}"
    )
    assert pairs.ts.tolist() == [35, 40]
    assert pairs.positives == ["Alpha", "Delta"]


def test_pairs_only_see_the_events_passed_in() -> None:
    early = EVENTS.filter(pl.col("ts") < 30)
    pairs = build_pairs(ITEMS, early, EncoderConfig(item_pairs=False), "{title}")
    assert pairs.ts.max() < 30 and "Delta" not in pairs.positives


def test_retrieval_queries_use_history_before_and_items_after() -> None:
    before, after = EVENTS.filter(pl.col("ts") < 30), EVENTS.filter(pl.col("ts") >= 30)
    queries = retrieval_queries(
        ITEMS, before, after, EncoderConfig(context_items=3), max_queries=10, corpus_items=1
    )
    assert queries.user_ids == ["u1", "u2"]
    assert queries.queries == ["Beta | Alpha", "Gamma | Gamma"]
    assert queries.relevant == [{2, 3}, {0}]
    assert set(queries.corpus.tolist()) >= {0, 2, 3}
