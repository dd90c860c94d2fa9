"""Training and evaluation pairs mined from the logs.

A *context pair* is (the user's last ``context_items`` items as text, the next item's text):
it teaches the encoder what people go on to consume, which language alone cannot know. An
*item pair* is (an item, the item the same user consumed right after it): co-consumption.
Only the events passed in are used; callers pass events before their training cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.catalog import Histories, ItemCatalog
from recsys.config import EncoderConfig
from recsys.encoder.text import context_texts, item_context_parts, item_texts


@dataclass(frozen=True)
class TrainingPairs:
    anchors: list[str]
    positives: list[str]
    targets: np.ndarray
    """Catalog index of the positive item of each pair."""
    ts: np.ndarray
    is_context: np.ndarray
    """True for (user context, next item) pairs, False for item-to-item pairs."""

    def __len__(self) -> int:
        return len(self.anchors)


def build_pairs(
    items: pl.DataFrame, interactions: pl.DataFrame, config: EncoderConfig, template: str
) -> TrainingPairs:
    """Context pairs (and item pairs when ``config.item_pairs``), the ``config.max_pairs`` most recent."""
    catalog = ItemCatalog.from_items(items)
    histories = Histories.from_interactions(interactions, catalog)
    users, positions, kinds, stamps = [], [], [], []
    for row, (history, history_ts) in enumerate(zip(histories.items, histories.timestamps, strict=True)):
        steps = np.arange(1, len(history))
        for context_kind in (True, False) if config.item_pairs else (True,):
            keep = steps if context_kind else steps[history[steps - 1] != history[steps]]
            users.append(np.full(len(keep), row))
            positions.append(keep)
            kinds.append(np.full(len(keep), context_kind))
            stamps.append(history_ts[keep])
    if not sum(len(p) for p in positions):
        raise ValueError("no training pairs: every user has fewer than two events")
    user = np.concatenate(users)
    position = np.concatenate(positions)
    is_context = np.concatenate(kinds)
    ts = np.concatenate(stamps)
    # Most recent first (stable, so ties keep their order), then back to time order.
    chosen = np.argsort(-ts, kind="stable")[: config.max_pairs]
    chosen = chosen[np.argsort(ts[chosen], kind="stable")]
    user, position, is_context, ts = user[chosen], position[chosen], is_context[chosen], ts[chosen]

    texts = item_texts(items, template)
    parts = item_context_parts(items, config.context_text_chars)
    targets = np.asarray([histories.items[u][p] for u, p in zip(user, position, strict=True)], dtype=np.int64)
    contexts = context_texts(
        parts, [histories.items[u][:p] for u, p in zip(user, position, strict=True)], config.context_items
    )
    previous = [texts[histories.items[u][p - 1]] for u, p in zip(user, position, strict=True)]
    anchors = [c if flag else prev for c, prev, flag in zip(contexts, previous, is_context, strict=True)]
    return TrainingPairs(anchors, [texts[t] for t in targets], targets, ts, is_context)


@dataclass(frozen=True)
class RetrievalQueries:
    """Users' contexts at a cutoff and the items they consumed after it: what the evaluator scores."""

    user_ids: list[str]
    queries: list[str]
    relevant: list[set[int]]
    corpus: np.ndarray
    """Catalog indices the evaluator searches: every relevant item plus the most popular others."""


def retrieval_queries(
    items: pl.DataFrame,
    before: pl.DataFrame,
    after: pl.DataFrame,
    config: EncoderConfig,
    max_queries: int,
    corpus_items: int,
) -> RetrievalQueries:
    """One query per user active both before and after the cutoff (a seeded sample of ``max_queries``)."""
    catalog = ItemCatalog.from_items(items)
    later = (
        catalog.with_index(after).group_by("user_id", maintain_order=True).agg(pl.col("item_idx").unique())
    )
    users = sorted(set(later["user_id"].to_list()) & set(before["user_id"].to_list()))
    if len(users) > max_queries:
        rng = np.random.default_rng(config.seed)
        users = sorted(rng.choice(np.asarray(users, dtype=object), max_queries, replace=False).tolist())
    histories = Histories.from_interactions(before, catalog, users)
    future = dict(later.iter_rows())
    relevant = [set(map(int, future[user])) for user in users]
    queries = context_texts(
        item_context_parts(items, config.context_text_chars), histories.items, config.context_items
    )
    popular = catalog.with_index(before)["item_idx"].value_counts(sort=True)["item_idx"].to_numpy()
    wanted = set().union(*relevant) if relevant else set()
    corpus = np.asarray(
        sorted(wanted | set(popular[: max(0, corpus_items - len(wanted))].tolist())), dtype=np.int64
    )
    return RetrievalQueries(users, queries, relevant, corpus)
