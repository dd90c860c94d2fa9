"""Full-ranking metrics from top-k lists against each user's held-out items, vectorized with numpy.

Inputs everywhere: ``topk`` is an ``n_users x K`` int array of item indices, best first,
padded with ``-1`` where a model had fewer candidates; ``truth[u]`` holds user u's
relevant (test) item indices, and optional ``gains[u]`` their graded relevance.

Conventions (stated because papers differ):
- NDCG@k: gain / log2(rank + 1), normalised by the ideal ordering of the user's own
  gains; binary gains unless graded gains are given.
- Recall@k: hits@k / min(|truth|, k) — the capped form (Steck 2019, Liang et al. 2018), so a
  perfect ranker scores 1 even for users with more than k test items.
- MRR: 1 / rank of the first hit within the whole list (K = the longest k), 0 without a hit.
- HR@k: share of users with at least one hit in the top k.
- Coverage@k: distinct recommended items in all users' top k / catalog size.
- Novelty@k: mean self-information -log2((users_i + 1) / (n_users + 1)) of recommended
  items, ``users_i`` = training users of item i (add-one smoothing keeps cold items finite).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def relevance(
    topk: np.ndarray, truth: Sequence[np.ndarray], gains: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """``n_users x K`` float64 gain of each recommended item: 0 for misses and padding, else 1 or its gain."""
    topk = np.asarray(topk, dtype=np.int64)
    if topk.ndim != 2 or len(topk) != len(truth):
        raise ValueError(
            f"topk must be n_users x K with one row per truth set; got {topk.shape}, {len(truth)}"
        )
    lengths = np.fromiter((len(t) for t in truth), dtype=np.int64, count=len(truth))
    truth_items = (
        np.concatenate([np.asarray(t, dtype=np.int64) for t in truth]) if len(truth) else np.zeros(0)
    )
    if gains is None:
        truth_gains = np.ones(len(truth_items))
    else:
        truth_gains = (
            np.concatenate([np.asarray(g, dtype=np.float64) for g in gains]) if len(gains) else np.zeros(0)
        )
        if len(truth_gains) != len(truth_items):
            raise ValueError("gains must have one value per truth item")
    width = int(max(topk.max(initial=0), truth_items.max(initial=0))) + 2
    truth_keys = np.repeat(np.arange(len(truth)), lengths) * width + truth_items
    order = np.argsort(truth_keys, kind="stable")
    truth_keys, truth_gains = truth_keys[order], truth_gains[order]
    if len(truth_keys) == 0:
        return np.zeros(topk.shape)
    rec_keys = np.arange(len(topk))[:, None] * width + np.where(topk >= 0, topk, width - 1)
    position = np.minimum(np.searchsorted(truth_keys, rec_keys), len(truth_keys) - 1)
    found = (truth_keys[position] == rec_keys) & (topk >= 0)
    return np.where(found, truth_gains[position], 0.0)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k(
    rel: np.ndarray, truth: Sequence[np.ndarray], k: int, gains: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Per-user NDCG@k from :func:`relevance` output; users without truth get 0."""
    discounts = _discounts(k)
    dcg = (rel[:, :k] * discounts[: rel[:, :k].shape[1]]).sum(axis=1)
    ideal = np.zeros((len(truth), k))
    for row, user_truth in enumerate(truth):
        user_gains = (
            np.ones(len(user_truth)) if gains is None else np.sort(np.asarray(gains[row], float))[::-1]
        )
        ideal[row, : min(k, len(user_gains))] = user_gains[:k]
    idcg = ideal @ discounts
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def recall_at_k(rel: np.ndarray, truth: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Per-user hits@k / min(|truth|, k); users without truth get 0."""
    hits = (rel[:, :k] > 0).sum(axis=1).astype(np.float64)
    denominator = np.minimum(np.fromiter((len(t) for t in truth), dtype=np.float64, count=len(truth)), k)
    return np.divide(hits, denominator, out=np.zeros_like(hits), where=denominator > 0)


def hit_rate_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """Per-user 1.0 when any of the top k is relevant."""
    return np.asarray((rel[:, :k] > 0).any(axis=1), dtype=np.float64)


def reciprocal_rank(rel: np.ndarray) -> np.ndarray:
    """Per-user 1 / rank of the first relevant item in the list, 0 without one."""
    hit = rel > 0
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1), 0.0)


def coverage_at_k(topk: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalog that appears in at least one user's top k."""
    items = topk[:, :k]
    return float(len(np.unique(items[items >= 0])) / n_items) if n_items else 0.0


def novelty_at_k(topk: np.ndarray, item_users: np.ndarray, n_users: int, k: int) -> float:
    """Mean self-information (bits) of the recommended items; ``item_users`` = training users per item."""
    items = topk[:, :k]
    items = items[items >= 0]
    if len(items) == 0:
        return 0.0
    information = -np.log2((item_users.astype(np.float64) + 1.0) / (n_users + 1.0))
    return float(information[items].mean())


def per_user_metrics(
    topk: np.ndarray,
    truth: Sequence[np.ndarray],
    ks: Sequence[int],
    gains: Sequence[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Accuracy metrics per user (so that slices are plain averages over rows)."""
    rel = relevance(topk, truth, gains)
    metrics: dict[str, np.ndarray] = {}
    for k in sorted(ks):
        metrics[f"ndcg@{k}"] = ndcg_at_k(rel, truth, k, gains)
    for k in sorted(ks):
        metrics[f"recall@{k}"] = recall_at_k(rel, truth, k)
    metrics["mrr"] = reciprocal_rank(rel)
    metrics[f"hr@{min(ks)}"] = hit_rate_at_k(rel, min(ks))
    return metrics


def ranking_metrics(
    topk: np.ndarray,
    truth: Sequence[np.ndarray],
    ks: Sequence[int],
    item_users: np.ndarray,
    n_train_users: int,
    gains: Sequence[np.ndarray] | None = None,
) -> dict[str, float]:
    """Mean accuracy metrics over users plus coverage and novelty at the smallest k."""
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    if topk.shape[1] < max(ks):
        raise ValueError(f"top-k lists have {topk.shape[1]} columns, fewer than k={max(ks)}")
    per_user = per_user_metrics(topk, truth, ks, gains)
    summary = {name: float(values.mean()) if len(values) else 0.0 for name, values in per_user.items()}
    k = min(ks)
    summary[f"coverage@{k}"] = coverage_at_k(topk, len(item_users), k)
    summary[f"novelty@{k}"] = novelty_at_k(topk, item_users, n_train_users, k)
    return summary


def ratio_interval(
    numerator: np.ndarray,
    denominator: np.ndarray,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of ``mean(numerator) / mean(denominator)``, users resampled in pairs.

    Both arrays hold one metric value per test user for two models on the same users. Resampling
    whole users (both models' values together) keeps the spread between easy and hard users, which
    moves both means alike, from widening the interval; what remains says how far a cut's ratio can
    be trusted, which with a few dozen test users is not far.
    """
    from scipy.stats import bootstrap

    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    if numerator.shape != denominator.shape or numerator.ndim != 1 or len(numerator) < 2:
        raise ValueError(
            f"need two equal 1-d arrays of at least 2 users; got {numerator.shape}, {denominator.shape}"
        )

    def ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(num.mean(axis=axis) / den.mean(axis=axis))

    result = bootstrap(
        (numerator, denominator),
        ratio,
        paired=True,
        vectorized=True,
        confidence_level=level,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
