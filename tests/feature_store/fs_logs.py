"""Tiny seeded event logs shared by the feature store tests."""

from __future__ import annotations

import random

import polars as pl

DAY = 86_400
START = 1_700_000_000


def make_log(
    seed: int, users: int = 6, items: int = 9, events: int = 160, days: int = 40
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items, interactions): a few categories (one item without), some ratings missing, tied seconds."""
    rng = random.Random(seed)
    item_ids = [f"i{n}" for n in range(items)]
    categories = [[] if n == 0 else [["jazz", "chess", "tea"][n % 3], "extra"] for n in range(items)]
    catalog = pl.DataFrame(
        {"item_id": item_ids, "title": item_ids, "categories": categories},
        schema={"item_id": pl.String, "title": pl.String, "categories": pl.List(pl.String)},
    )
    rows = []
    for _ in range(events):
        ts = START + rng.randrange(0, days * DAY, 600)  # coarse seconds: same-second events happen
        rating = rng.choice([None, 1.0, 3.5, 5.0])
        rows.append((f"u{rng.randrange(users)}", rng.choice(item_ids[: items - 1]), ts, rating))
    log = pl.DataFrame(rows, schema=["user_id", "item_id", "ts", "rating"], orient="row").with_columns(
        pl.col("rating").cast(pl.Float64),
        pl.coalesce("rating", pl.lit(1.0)).alias("weight"),
        pl.lit("view").alias("event"),
    )
    return catalog, log.sort("ts")
