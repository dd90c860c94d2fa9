"""Why an item ranked where it did: exact per-feature contributions (LightGBM ``pred_contrib``).

For every candidate, ``bias + Σ contrib_<feature> == score`` (the ranker's raw score), so an
explanation is an exact decomposition, not an approximation. Items that are not candidates
at all are explained by the step that dropped them: unknown id, already seen, filtered out,
retrieved but cut by the blend, or not retrieved by any source (with each source's rank).

Used by ``recsys inspect``, the HTML report and the HTTP API's ``explain=true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from recsys.catalog import Histories
from recsys.moments import UserMoments
from recsys.ranking.ranker import Ranker
from recsys.recommend import Recommender, top_k

CONTRIB_PREFIX = "contrib_"
BIAS = "bias"
DEEP_SEARCH_K = 10_000
"""How deep each source is queried to find where a non-candidate item would have ranked."""

RANKED = "ranked"
UNKNOWN_ITEM = "unknown_item"
SEEN = "seen"
FILTERED = "filtered"
CUT_BY_BLEND = "cut_by_blend"
NOT_RETRIEVED = "not_retrieved"


def contribution_column(feature: str) -> str:
    return f"{CONTRIB_PREFIX}{feature}"


def with_contributions(ranker: Ranker, scored: pl.DataFrame) -> pl.DataFrame:
    """``scored`` (candidates, features, ``score``) plus ``bias`` and one ``contrib_<f>`` per feature."""
    contributions = ranker.contributions(scored)
    renamed = contributions.rename({name: contribution_column(name) for name in ranker.features})
    return pl.concat([scored, renamed.select(BIAS, *renamed.columns[:-1])], how="horizontal")


def user_histories(histories: Histories, user_id: str) -> Histories:
    """The one-user slice of ``histories`` (a user absent from it has an empty history)."""
    if user_id in histories.user_ids:
        row = histories.user_ids.index(user_id)
        return Histories([user_id], [histories.items[row]], [histories.timestamps[row]])
    empty = np.zeros(0, dtype=np.int64)
    return Histories([user_id], [empty], [empty.copy()])


def _require_ranker(recommender: Recommender) -> Ranker:
    if recommender.ranker is None:
        raise ValueError("this recommender has no ranker: there is nothing to explain")
    return recommender.ranker


def _titled(recommender: Recommender, frame: pl.DataFrame) -> pl.DataFrame:
    if "title" not in recommender.items.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("title"))
    return frame.join(recommender.items.select("item_id", "title"), on="item_id", how="left")


def _placed(user_id: str, as_of: int | UserMoments) -> UserMoments:
    return as_of if isinstance(as_of, UserMoments) else UserMoments.at([user_id], as_of)


def explain_user(
    recommender: Recommender,
    user_id: str,
    histories: Histories,
    as_of: int | UserMoments,
    k: int | None = 20,
    allowed: np.ndarray | None = None,
) -> pl.DataFrame:
    """The user's ``k`` best candidates, best first: the list served for ``k`` (cold items' places
    included, see :mod:`recsys.ranking.cold_slots`); all candidates in the ranker's order when ``k``
    is None.

    Columns: user_id, rank, item_id, title, score, sources, every ranking feature's value,
    ``bias`` and ``contrib_<feature>`` for each feature; per row, bias + contributions == score.
    ``as_of`` is the moment the features describe (events strictly before it count), or where the
    batch job places the user (:class:`~recsys.moments.UserMoments`: the items' state on its grid).
    """
    ranker = _require_ranker(recommender)
    history = user_histories(histories, user_id)
    scored = recommender.scored_candidates(history, _placed(user_id, as_of), allowed)
    ranked = top_k(scored, scored.height) if k is None else recommender.top_k(scored, k)
    explained = _titled(recommender, with_contributions(ranker, ranked)).rename({"ts": "as_of"})
    leading = ["user_id", "rank", "item_id", "title", "score", "sources"]
    rest = [c for c in explained.columns if c not in leading and not c.startswith(CONTRIB_PREFIX)]
    rest.remove(BIAS)
    contribs = [contribution_column(name) for name in ranker.features]
    return explained.select(*leading, *rest, BIAS, *contribs).sort("rank")


def contributions_long(explained: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """One row per (item, feature) of an :func:`explain_user` frame, largest |contribution| first per item."""
    parts = [
        explained.select(
            "rank",
            "item_id",
            pl.lit(name).alias("feature"),
            pl.col(name).cast(pl.Float64).alias("value"),
            pl.col(contribution_column(name)).alias("contribution"),
        )
        for name in features
    ]
    return (
        pl.concat(parts)
        .with_columns(pl.col("contribution").abs().alias("_abs"))
        .sort(["rank", "_abs"], descending=[False, True])
        .drop("_abs")
    )


def recent_history(recommender: Recommender, histories: Histories, user_id: str, n: int = 10) -> pl.DataFrame:
    """The user's ``n`` latest items, newest first: position (1 = latest), item_id, title, ts."""
    history = user_histories(histories, user_id)
    items, stamps = history.items[0][-n:][::-1], history.timestamps[0][-n:][::-1]
    frame = pl.DataFrame(
        {
            "position": np.arange(1, len(items) + 1, dtype=np.int32),
            "item_id": recommender.catalog.ids[items].tolist(),
            "ts": stamps,
        },
        schema={"position": pl.Int32, "item_id": pl.String, "ts": pl.Int64},
    )
    return _titled(recommender, frame).select("position", "item_id", "title", "ts")


@dataclass(frozen=True)
class ItemExplanation:
    """Why ``item_id`` ranked where it did for ``user_id``, or why it was not a candidate."""

    user_id: str
    item_id: str
    status: str
    """One of ranked, unknown_item, seen, filtered, cut_by_blend, not_retrieved."""
    reason: str
    candidates: int
    """How many candidates the user had."""
    rank: int | None = None
    score: float | None = None
    mean_score: float | None = None
    """Average score over the user's candidates (the "average candidate")."""
    contributions: pl.DataFrame = field(default_factory=pl.DataFrame)
    """feature, value, contribution, mean_value, mean_contribution, delta (largest |delta| first);
    Σ delta == score - mean_score."""
    source_ranks: pl.DataFrame = field(default_factory=pl.DataFrame)
    """source, rank, score, within_k (rank <= per_source_k): where each source put the item."""


def _versus_average(ranker: Ranker, explained: pl.DataFrame, item_id: str) -> pl.DataFrame:
    row = explained.filter(pl.col("item_id") == item_id)
    rows = []
    for name in ranker.features:
        contrib = explained[contribution_column(name)]
        values = explained[name].cast(pl.Float64)
        value = row[name].cast(pl.Float64).item()
        item_contrib = float(row[contribution_column(name)].item())
        mean_contrib = float(contrib.mean())  # type: ignore[arg-type]
        mean_value = values.mean()
        rows.append(
            {
                "feature": name,
                "value": value,
                "contribution": item_contrib,
                "mean_value": None if mean_value is None else float(mean_value),  # type: ignore[arg-type]
                "mean_contribution": mean_contrib,
                "delta": item_contrib - mean_contrib,
            }
        )
    frame = pl.DataFrame(
        rows,
        schema={
            "feature": pl.String,
            "value": pl.Float64,
            "contribution": pl.Float64,
            "mean_value": pl.Float64,
            "mean_contribution": pl.Float64,
            "delta": pl.Float64,
        },
    )
    return frame.sort(pl.col("delta").abs(), descending=True)


def _candidate_source_ranks(recommender: Recommender, row: pl.DataFrame) -> pl.DataFrame:
    names = [source.name for source in recommender.sources]
    return pl.DataFrame(
        {
            "source": names,
            "rank": [row[f"cand_{name}_rank"].item() for name in names],
            "score": [row[f"cand_{name}_score"].item() for name in names],
        },
        schema={"source": pl.String, "rank": pl.Int64, "score": pl.Float64},
    ).with_columns(pl.col("rank").is_not_null().alias("within_k"))


def _deep_source_ranks(recommender: Recommender, history: Histories, item_idx: int) -> pl.DataFrame:
    """Each source queried far deeper than usual: where (if anywhere) it would put the item."""
    depth = min(len(recommender.catalog), DEEP_SEARCH_K)
    per_source_k = recommender.config.retrieval.per_source_k
    rows = []
    for source in recommender.sources:
        found = source.candidates(history, depth).filter(pl.col("item_idx") == item_idx)
        rank = int(found["rank"].item()) if found.height else None
        score = float(found["score"].item()) if found.height else None
        rows.append({"source": source.name, "rank": rank, "score": score})
    frame = pl.DataFrame(rows, schema={"source": pl.String, "rank": pl.Int64, "score": pl.Float64})
    return frame.with_columns((pl.col("rank") <= per_source_k).fill_null(False).alias("within_k"))


def _describe_ranks(ranks: pl.DataFrame, depth: int) -> str:
    return ", ".join(
        f"{name} #{rank}" if rank is not None else f"{name} not in top {depth}"
        for name, rank in zip(ranks["source"], ranks["rank"], strict=True)
    )


def explain_item(
    recommender: Recommender,
    user_id: str,
    item_id: str,
    histories: Histories,
    as_of: int | UserMoments,
    allowed: np.ndarray | None = None,
) -> ItemExplanation:
    """Why ``item_id`` ranked where it did for ``user_id``, compared with the user's average candidate;
    or, when it was not a candidate, the step that dropped it."""
    ranker = _require_ranker(recommender)
    history = user_histories(histories, user_id)
    item_idx = recommender.catalog.index(item_id)
    if item_idx is None:
        return ItemExplanation(user_id, item_id, UNKNOWN_ITEM, f"item {item_id} is not in the catalog", 0)
    seen_at = history.timestamps[0][history.items[0] == item_idx]
    retrieval = recommender.config.retrieval
    if len(seen_at) and retrieval.exclude_seen:
        reason = (
            f"user {user_id} already interacted with it ({len(seen_at)} event(s), latest at ts "
            f"{int(seen_at.max())}); seen items are never recommended (retrieval.exclude_seen)"
        )
        return ItemExplanation(user_id, item_id, SEEN, reason, 0)
    if allowed is not None and not allowed[item_idx]:
        return ItemExplanation(user_id, item_id, FILTERED, "excluded by the request's item filter", 0)

    scored = recommender.scored_candidates(history, _placed(user_id, as_of), allowed)
    explained = with_contributions(ranker, top_k(scored, scored.height))
    mean_score = float(explained["score"].mean()) if explained.height else None  # type: ignore[arg-type]
    row = explained.filter(pl.col("item_id") == item_id)
    if row.height:
        rank = int(row["rank"].item())
        sources = ", ".join(row["sources"].item())
        return ItemExplanation(
            user_id,
            item_id,
            RANKED,
            f"ranked {rank} of {explained.height} candidates (retrieved by {sources})",
            explained.height,
            rank=rank,
            score=float(row["score"].item()),
            mean_score=mean_score,
            contributions=_versus_average(ranker, explained, item_id),
            source_ranks=_candidate_source_ranks(recommender, row),
        )
    ranks = _deep_source_ranks(recommender, history, item_idx)
    depth = min(len(recommender.catalog), DEEP_SEARCH_K)
    if ranks["within_k"].any():
        status = CUT_BY_BLEND
        reason = (
            f"retrieved ({_describe_ranks(ranks, depth)}) but cut when the blend kept the "
            f"{retrieval.candidates_k} candidates with the best source ranks (retrieval.candidates_k)"
        )
    else:
        status = NOT_RETRIEVED
        reason = (
            f"no source retrieved it within its top {retrieval.per_source_k} "
            f"(retrieval.per_source_k): {_describe_ranks(ranks, depth)}"
        )
    return ItemExplanation(
        user_id, item_id, status, reason, explained.height, mean_score=mean_score, source_ranks=ranks
    )
