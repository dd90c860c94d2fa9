"""The input contract: the canonical columns and dtypes every stage after validation relies on."""

from __future__ import annotations

import polars as pl

ITEM_ID = "item_id"
USER_ID = "user_id"
TS = "ts"

ITEMS_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "text": pl.String(),
    "categories": pl.List(pl.String()),
    "tags": pl.List(pl.String()),
    "created_at": pl.Int64(),
}
"""Canonical item columns; other metadata columns are passed through unchanged."""

INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "ts": pl.Int64(),
    "event": pl.String(),
    "weight": pl.Float64(),
    "rating": pl.Float64(),
}
"""Canonical interaction columns. ``weight`` is the explicit weight, else the rating, else 1.0."""

CATEGORY_SOURCES = ("category", "categories", "genres")
TAG_SOURCES = ("tags",)
DEFAULT_EVENT = "interaction"
