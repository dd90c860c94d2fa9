"""Who gets exposure: top-k lists by item group, concentration, long tail and calibration.

Every evaluated list set (recsys, its sources, the baselines, the promoted run re-scored) is
described on the same split by the same code, so they can be compared side by side and a run
whose popularity bias grows can be refused by the promotion gate.

Conventions (stated because papers differ):
- Exposure counts recommendation slots in the top ``k`` (every position weighs 1, padding none).
- Popularity is the item's number of training events; popularity rank orders items by it,
  most popular first, ties broken by catalog order. Decile 1 is the most popular 10% of items.
- Long tail: items outside the top 20% by popularity rank (deciles 3-10); the catalog's long-tail
  share is therefore 0.8 and a list set without popularity bias shows about that.
- Gini of exposure over *all* catalog items, never-shown items included (0: every item shown
  equally often; (n - 1) / n: one item takes every slot).
- Calibration (Steck 2018, "Calibrated recommendations"): per user, KL(p || q~) between the
  category distribution p of the history and q of the recommendations, each item spreading
  weight 1 evenly over its categories, q~ = (1 - alpha) q + alpha p with alpha = 0.01; averaged
  over users whose history and list both have a categorized item. 0 is perfectly calibrated.
- Item age: ``created_at`` when present, else the item's first training event, against the
  last training event; items with neither are "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse

from recsys.catalog import Histories, ItemCatalog

EXPOSURE_K = 10
HEAD_SHARE = 0.2
"""Items in the top 20% by training popularity are the head; the rest is the long tail."""
CALIBRATION_ALPHA = 0.01
"""Steck's smoothing: keeps KL finite when a list misses one of the history's categories."""
MAX_CATEGORIES = 20
"""Categories shown by name in exposure shares (most frequent in the catalog); the rest is "other"."""
AGE_BUCKETS_DAYS = (30, 90, 365, 3 * 365)
AGE_LABELS = ("<30d", "30-90d", "90d-1y", "1-3y", ">3y")
DAY_S = 86_400
UNKNOWN = "unknown"
NO_CATEGORY = "(none)"
OTHER = "other"
CHUNK_USERS = 4096
"""Users per block in calibration: memory is block x categories floats."""


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = equal; (n-1)/n = one entry has everything)."""
    values = np.sort(np.asarray(exposure, dtype=np.float64))
    n, total = len(values), values.sum()
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * values).sum() / (n * total))


def popularity_ranks(counts: np.ndarray) -> np.ndarray:
    """Rank of each item by count, 0 = most popular, ties in catalog order."""
    order = np.lexsort((np.arange(len(counts)), -np.asarray(counts)))
    ranks = np.empty(len(counts), dtype=np.int64)
    ranks[order] = np.arange(len(counts))
    return ranks


def popularity_deciles(counts: np.ndarray) -> np.ndarray:
    """Decile 0..9 of each item by popularity rank (0 = the most popular 10% of the catalog)."""
    n = len(counts)
    return (popularity_ranks(counts) * 10 // max(n, 1)).astype(np.int64)


def long_tail_mask(counts: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
    """True for items outside the top ``head_share`` of the catalog by popularity rank."""
    head = int(np.ceil(head_share * len(counts)))
    return np.asarray(popularity_ranks(counts) >= head)


def slots(topk: np.ndarray, k: int) -> np.ndarray:
    """The recommended item indices of every top-k list, flattened, padding dropped."""
    items = np.asarray(topk, dtype=np.int64)[:, :k]
    return items[items >= 0]


def group_shares(items: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Share of ``items`` (slots) falling in each group, ``codes[item]`` = the item's group."""
    counts = np.bincount(codes[items], minlength=n_groups).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def _user_items(rows: Sequence[np.ndarray], n_items: int) -> sparse.csr_matrix:
    """Users x items counts of the (valid, >= 0) item indices in each row."""
    lengths = [int((np.asarray(r) >= 0).sum()) for r in rows]
    items = [np.asarray(r, dtype=np.int64) for r in rows]
    columns = np.concatenate([r[r >= 0] for r in items]) if items else np.zeros(0, np.int64)
    users = np.repeat(np.arange(len(rows)), lengths)
    return sparse.csr_matrix((np.ones(len(columns)), (users, columns)), shape=(len(rows), n_items))


def calibration_kl(
    histories: Sequence[np.ndarray],
    topk: np.ndarray,
    item_categories: sparse.csr_matrix,
    k: int,
    alpha: float = CALIBRATION_ALPHA,
) -> tuple[float, int]:
    """Mean KL(history categories || smoothed recommended categories) and the users it averages.

    ``item_categories`` is a sparse items x categories matrix whose rows sum to 1 (0 for an item
    without category), so a user's distribution is the normalized sum of its items' rows.
    """
    lists = np.asarray(topk, dtype=np.int64)[:, :k]
    n_items = item_categories.shape[0]
    total, users = 0.0, 0
    for start in range(0, len(lists), CHUNK_USERS):
        block = lists[start : start + CHUNK_USERS]
        p = _user_items(histories[start : start + len(block)], n_items) @ item_categories
        q = _user_items(list(block), n_items) @ item_categories
        p, q = np.asarray(p.toarray()), np.asarray(q.toarray())
        p_mass, q_mass = p.sum(axis=1, keepdims=True), q.sum(axis=1, keepdims=True)
        counted = (p_mass[:, 0] > 0) & (q_mass[:, 0] > 0)
        p = np.divide(p, p_mass, out=np.zeros_like(p), where=p_mass > 0)
        q = np.divide(q, q_mass, out=np.zeros_like(q), where=q_mass > 0)
        smoothed = (1 - alpha) * q + alpha * p
        ratio = np.divide(p, smoothed, out=np.ones_like(p), where=p > 0)
        total += float((p * np.log(ratio)).sum(axis=1)[counted].sum())
        users += int(counted.sum())
    return (total / users if users else 0.0), users


@dataclass(frozen=True)
class Dimension:
    """One way of grouping items: a group code per item, the group labels, the reference shares."""

    labels: list[str]
    codes: np.ndarray
    catalog: np.ndarray
    training: np.ndarray

    @classmethod
    def of(cls, labels: list[str], codes: np.ndarray, train_counts: np.ndarray) -> Dimension:
        n = len(labels)
        catalog = np.bincount(codes, minlength=n) / max(len(codes), 1)
        events = np.bincount(codes, weights=train_counts, minlength=n)
        return cls(labels, codes, catalog, events / events.sum() if events.sum() else events)


@dataclass(frozen=True)
class ItemGroups:
    """What the exposure analysis needs to know about the catalog, computed once per split."""

    train_counts: np.ndarray
    long_tail: np.ndarray
    dimensions: dict[str, Dimension]
    item_categories: sparse.csr_matrix
    """Sparse items x categories, each categorized item's row sums to 1 (calibration)."""

    @classmethod
    def build(cls, items: pl.DataFrame, catalog: ItemCatalog, train: pl.DataFrame) -> ItemGroups:
        """Groups from the items table (``categories``, ``created_at`` if present) and training events."""
        n = len(catalog)
        indexed = catalog.with_index(train.select("item_id", "ts"))
        item_idx, stamps = indexed["item_idx"].to_numpy(), indexed["ts"].to_numpy().astype(np.float64)
        counts = np.bincount(item_idx, minlength=n).astype(np.float64)
        rows = catalog.with_index(items).sort("item_idx")
        present = rows["item_idx"].to_numpy()

        names: list[list[str]] = [[] for _ in range(n)]
        if "categories" in rows.columns:
            for row, cats in zip(present, rows["categories"].to_list(), strict=True):
                names[row] = [c for c in (cats or []) if c]
        vocabulary = sorted({c for cats in names for c in cats})
        column = {c: i for i, c in enumerate(vocabulary)}
        distinct = [sorted(set(cats)) for cats in names]
        weights = [1.0 / len(cats) for cats in distinct for _ in cats]
        owners = np.repeat(np.arange(n), [len(cats) for cats in distinct])
        columns = np.asarray([column[c] for cats in distinct for c in cats], dtype=np.int64)
        item_categories = sparse.csr_matrix((weights, (owners, columns)), shape=(n, len(vocabulary)))

        first = [cats[0] if cats else NO_CATEGORY for cats in names]
        frequency = (
            pl.Series("category", first).value_counts().sort(["count", "category"], descending=[True, False])
        )
        named = [c for c in frequency["category"].to_list() if c != NO_CATEGORY]
        shown = sorted(named[:MAX_CATEGORIES])
        category_labels = [*shown, *([OTHER] if len(named) > MAX_CATEGORIES else []), NO_CATEGORY]
        category_code = {c: i for i, c in enumerate(category_labels)}
        categories = np.asarray(
            [category_code[c] if c in category_code else category_code[OTHER] for c in first], dtype=np.int64
        )

        deciles = popularity_deciles(counts)
        decile_labels = [f"D{d + 1}" for d in range(10)]

        seen_at = np.full(n, np.nan)
        if len(item_idx):
            first_event = np.full(n, np.inf)
            np.minimum.at(first_event, item_idx, stamps)
            seen_at = np.where(np.isfinite(first_event), first_event, np.nan)
        if "created_at" in rows.columns:
            created = np.full(n, np.nan)
            created[present] = rows["created_at"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            seen_at = np.where(np.isnan(created), seen_at, created)
        known = seen_at[~np.isnan(seen_at)]
        reference = float(stamps.max()) if len(stamps) else float(known.max(initial=0.0))
        age_days = np.maximum(reference - seen_at, 0.0) / DAY_S
        ages = np.where(
            np.isnan(age_days),
            len(AGE_LABELS),
            np.searchsorted(np.asarray(AGE_BUCKETS_DAYS), np.nan_to_num(age_days), side="right"),
        ).astype(np.int64)

        return cls(
            train_counts=counts,
            long_tail=long_tail_mask(counts),
            dimensions={
                "popularity_decile": Dimension.of(decile_labels, deciles, counts),
                "category": Dimension.of(category_labels, categories, counts),
                "age": Dimension.of([*AGE_LABELS, UNKNOWN], ages, counts),
            },
            item_categories=item_categories,
        )

    def describe(self, topk: np.ndarray, histories: Histories, k: int = EXPOSURE_K) -> dict[str, Any]:
        """Fairness of one list set: Gini, long-tail share, calibration and exposure shares by group."""
        items = slots(topk, k)
        exposure = np.bincount(items, minlength=len(self.train_counts))
        kl, users = calibration_kl(histories.items, topk, self.item_categories, k)
        return {
            "gini": gini(exposure),
            "long_tail_share": float(self.long_tail[items].mean()) if len(items) else 0.0,
            "calibration_kl": kl,
            "calibration_users": users,
            "exposure": {
                name: group_shares(items, dim.codes, len(dim.labels)).tolist()
                for name, dim in self.dimensions.items()
            },
        }

    def reference(self) -> dict[str, Any]:
        """The shares every model's exposure is compared with: the catalog's and the training events'."""
        tail_events = self.train_counts[self.long_tail].sum()
        return {
            "long_tail": {
                "catalog": float(self.long_tail.mean()) if len(self.long_tail) else 0.0,
                "training": float(tail_events / self.train_counts.sum()) if self.train_counts.sum() else 0.0,
            },
            "groups": {
                name: {
                    "labels": dim.labels,
                    "catalog": dim.catalog.tolist(),
                    "training": dim.training.tolist(),
                }
                for name, dim in self.dimensions.items()
            },
        }


def fairness_report(
    groups: ItemGroups, lists: dict[str, np.ndarray], histories: Histories, k: int = EXPOSURE_K
) -> dict[str, Any]:
    """The report.json ``fairness`` section: reference shares and each model's exposure analysis."""
    return {
        "k": k,
        **groups.reference(),
        "models": {model: groups.describe(topk, histories, k) for model, topk in lists.items()},
    }


SUMMARY_KEYS = ("gini", "long_tail_share", "calibration_kl")


def fairness_summary(section: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Model -> the scalar bias figures (what the manifest keeps and the gate compares)."""
    return {
        model: {key: float(values[key]) for key in SUMMARY_KEYS}
        for model, values in section.get("models", {}).items()
    }


REFERENCES = {"catalog": "catalog", "training": "training events"}
"""Reference shares of a report's fairness section and the names the report shows them under."""


def exposure_frame(section: dict[str, Any], dimension: str) -> pl.DataFrame:
    """model, group, share: each model's exposure by group of ``dimension``, then the references."""
    groups = section["groups"][dimension]
    rows = [
        (model, label, share)
        for model, values in section["models"].items()
        for label, share in zip(groups["labels"], values["exposure"][dimension], strict=True)
    ]
    rows += [
        (name, label, share)
        for key, name in REFERENCES.items()
        for label, share in zip(groups["labels"], groups[key], strict=True)
    ]
    return pl.DataFrame(
        rows, schema={"model": pl.String, "group": pl.String, "share": pl.Float64}, orient="row"
    )


def summary_frame(section: dict[str, Any]) -> pl.DataFrame:
    """One row per model (then the catalog and training events): Gini, long-tail share, calibration."""
    rows = [
        (
            model,
            values["gini"],
            values["long_tail_share"],
            values["calibration_kl"],
            values["calibration_users"],
        )
        for model, values in section["models"].items()
    ]
    rows += [(name, None, section["long_tail"][key], None, None) for key, name in REFERENCES.items()]
    schema = {
        "model": pl.String,
        "gini": pl.Float64,
        "long_tail_share": pl.Float64,
        "calibration_kl": pl.Float64,
        "calibration_users": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")
