"""The texts the encoder sees: one item template and one user-context format, shared by training and serving.

Training pairs, catalog embeddings and user-context vectors all go through these two
functions, so an item or a user reads the same to the encoder at fit time and at query time.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
import polars as pl

CONTEXT_SEPARATOR = " | "
"""Between the items of a user context (most recent first, so truncation drops the oldest)."""


def template_fields(template: str) -> list[str]:
    """Column names a ``str.format`` template refers to, in order of appearance."""
    fields = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or not name.isidentifier():
            raise ValueError(f"item template {template!r}: fields must be column names, got {{{name}}}")
        if name not in fields:
            fields.append(name)
    return fields


def _as_strings(column: pl.Series) -> list[str]:
    """Every value as text: lists joined with ', ', nulls as ''."""
    if isinstance(column.dtype, pl.List):
        column = column.list.eval(pl.element().cast(pl.String)).list.join(", ")
    return column.cast(pl.String).fill_null("").to_list()


def item_texts(items: pl.DataFrame, template: str) -> list[str]:
    """One text per item row, ``template`` formatted over its columns (e.g. ``"{title}. {text}"``)."""
    fields = template_fields(template)
    missing = [name for name in fields if name not in items.columns]
    if missing:
        raise ValueError(
            f"item template {template!r} refers to missing column(s) {missing}; items have {items.columns}"
        )
    columns = {name: _as_strings(items[name]) for name in fields}
    return [
        template.format(**{name: values[row] for name, values in columns.items()}).strip()
        for row in range(items.height)
    ]


def item_context_parts(items: pl.DataFrame, text_chars: int) -> list[str]:
    """How a history item reads inside a user context: its title, optionally with the start of its text."""
    titles = _as_strings(items["title"])
    if text_chars <= 0:
        return titles
    texts = _as_strings(items["text"])
    return [
        f"{title}: {text[:text_chars]}" if text else title for title, text in zip(titles, texts, strict=True)
    ]


def context_texts(parts: Sequence[str], histories: Sequence[np.ndarray], context_items: int) -> list[str]:
    """Per history (item indices, oldest first): the context text of its last ``context_items`` items."""
    return [
        CONTEXT_SEPARATOR.join(parts[int(i)] for i in history[::-1][:context_items]) for history in histories
    ]
