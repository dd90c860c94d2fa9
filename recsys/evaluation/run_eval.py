"""The pipeline's evaluation stage: recsys, each candidate source and every baseline on one split.

Everything is evaluated in the same process on the same :class:`EvalSplit` with the same
metric code (:func:`evaluate_topk`), full ranking over the catalog minus seen items.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from rich.console import Group

from recsys.catalog import Histories
from recsys.config import AsOf
from recsys.console import console
from recsys.evaluation.fairness import EXPOSURE_K, ItemGroups, fairness_report
from recsys.evaluation.protocol import EvalSplit, evaluate_topk, make_split, run_baselines
from recsys.evaluation.report import fairness_table, metrics_table, slice_table, write_report
from recsys.models.category import category_codes
from recsys.moments import Moments, UserMoments, before_targets, per_user_moments

if TYPE_CHECKING:
    from recsys.recommend import Recommender
    from recsys.run_context import RunContext

Results = dict[str, dict[str, dict[str, float]]]
Lists = dict[str, np.ndarray]
"""Model name -> its top-10 item indices per test user (the input of the exposure analysis)."""
PROMOTED = "promoted:"
"""Results key prefix of the serving run re-evaluated on this run's split (what the gate compares)."""


def topk_matrix(frame: pl.DataFrame, user_ids: list[str], k: int, rank: str = "rank") -> np.ndarray:
    """Item indices per user (best first, -1 padded) from a long (user_id, item_idx, rank) frame."""
    out = np.full((len(user_ids), k), -1, dtype=np.int64)
    row_of = {user: row for row, user in enumerate(user_ids)}
    kept = frame.filter(pl.col(rank) <= k)
    rows = np.asarray([row_of[user] for user in kept["user_id"].to_list()], dtype=np.int64)
    if len(rows):
        out[rows, kept[rank].to_numpy().astype(np.int64) - 1] = kept["item_idx"].to_numpy()
    return out


def exposed(topk: np.ndarray) -> np.ndarray:
    """The columns the exposure analysis reads, copied: no model's full max(ks)-wide lists are kept."""
    return np.ascontiguousarray(topk[:, :EXPOSURE_K])


def candidate_recall(candidates: pl.DataFrame, user_ids: list[str], truths: list[np.ndarray]) -> list[float]:
    """Per user, the share of test items found anywhere in the blended candidate set (the ranker's
    ceiling)."""
    found = candidates.group_by("user_id").agg(pl.col("item_idx"))
    by_user = {user: set(items) for user, items in found.iter_rows()}
    return [
        len(by_user.get(user, set()) & set(truth.tolist())) / len(truth)
        for user, truth in zip(user_ids, truths, strict=True)
    ]


def split_moments(split: EvalSplit, as_of: AsOf) -> UserMoments:
    """Each test user's as-of moment, as the batch job places a user after the training events under
    ``recommend.as_of``: the split's cutoff (global), or just after their own latest training event
    (see :mod:`recsys.moments`); never after their first test event
    (:func:`~recsys.moments.before_targets`)."""
    per_user = per_user_moments(as_of, split.protocol)
    placed = Moments.of_events(split.train, per_user, now=split.cutoff).of(split.histories)
    return before_targets(placed, split.test)


def evaluate_recommender(
    recommender: Recommender, split: EvalSplit, ks: list[int], chunk_users: int
) -> tuple[Results, dict[str, Any], Lists]:
    """recsys and each of its candidate sources alone, plus the candidate union's recall and the lists.

    Test users are scored ``chunk_users`` at a time: memory is bounded by the chunk, not the split.
    Chunks take users in the order of their items' moments: point-in-time item state is computed per
    moment in a chunk, so a chunk of users at few moments costs a few cuts of the event log, not one per
    grid moment (a user's answer does not depend on the users scored beside it).
    """
    as_of = split_moments(split, recommender.config.recommend.as_of)
    users = split.histories.user_ids
    k = max(ks)
    by_moment = np.argsort(as_of.arrays(users)[1], kind="stable")
    topk = np.full((len(users), k), -1, dtype=np.int64)
    recall, candidates = [], 0
    for start in range(0, len(users), chunk_users):
        rows = by_moment[start : start + chunk_users].tolist()
        chunk = split.histories.take(rows)
        scored = recommender.scored_candidates(chunk, as_of)
        topk[rows] = topk_matrix(recommender.top_k(scored, k), chunk.user_ids, k)
        recall += candidate_recall(scored, chunk.user_ids, [split.test_items[row] for row in rows])
        candidates += scored.height
    results: Results = {"recsys": evaluate_topk(topk, split, ks)}
    lists: Lists = {"recsys": exposed(topk)}
    for source in recommender.sources:
        name = f"source:{source.name}"
        source_topk = topk_matrix(source.candidates(split.histories, k), users, k)
        results[name] = evaluate_topk(source_topk, split, ks)
        lists[name] = exposed(source_topk)
    extra = {
        "candidates_recall": float(np.mean(recall)) if recall else 0.0,
        "candidates_per_user": candidates / max(len(users), 1),
    }
    return results, extra, lists


def evaluate_promoted(
    ctx: RunContext, run_id: str, split: EvalSplit, ks: list[int]
) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """The promoted run ``run_id`` scored on *this* run's split, so the gate compares on one window.

    It answers with its own models (encoder, index, sources fitted on its own training part, which
    ends before this split's test events) and its own ranker; behavioural features come from this
    run's events, point in time. Its catalog may lack this run's new items: histories keep the items
    it knows, and its answers are mapped back to this split's catalog.
    """
    from recsys.assemble import candidate_recommender, evaluated_ranker, run_context_of
    from recsys.ranking.behaviour import OfflineBehaviour
    from recsys.run_context import read_events, read_items

    promoted_ctx = run_context_of(ctx.store.run_dir(run_id))
    promoted = candidate_recommender(promoted_ctx, "eval", evaluated_ranker(promoted_ctx))
    promoted.behaviour = OfflineBehaviour(read_events(ctx), read_items(ctx), promoted_ctx.config.features)
    users = split.histories.user_ids
    histories = Histories.from_interactions(split.train, promoted.catalog, users)
    k = max(ks)
    as_of = split_moments(split, ctx.config.recommend.as_of)
    ranked = promoted.top_k(promoted.scored_candidates(histories, as_of), k)
    to_split = np.asarray([split.catalog.index(item) for item in promoted.catalog.ids.tolist()], dtype=object)
    mapped = ranked.with_columns(
        pl.Series("item_idx", to_split[ranked["item_idx"].to_numpy()].tolist(), dtype=pl.Int64)
    ).drop_nulls("item_idx")
    topk = topk_matrix(mapped, users, k)
    return evaluate_topk(topk, split, ks), exposed(topk)


def pretrained_vectors(ctx: RunContext) -> np.ndarray:
    """Catalog vectors from the *base* encoder (the pretrained-text baseline), encoded as the run
    encodes its own catalog (:func:`~recsys.embeddings.select_encoder`: ONNX int8 on CPUs when it agrees
    with fp32 torch; the base model's export is kept in ``<runs>/.cache/`` too).

    They depend only on the base model, the text settings and each item's text, so they are cached
    under ``<runs>/.cache/`` text by text (:func:`~recsys.embeddings.encode_with_cache`): a nightly
    run encodes only the items that are new or whose text changed.
    """
    import hashlib

    from recsys.device import resolve_device
    from recsys.embeddings import encode_texts, encode_with_cache, item_texts, select_encoder
    from recsys.encoder.model import load_encoder
    from recsys.encoder.onnx_export import export_onnx, has_variant
    from recsys.run_context import read_items

    config = ctx.config.embeddings
    base_model = ctx.config.encoder.base_model

    def digest(*parts: object) -> str:
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]

    def encode(texts: list[str]) -> np.ndarray:
        model = load_encoder(base_model, config.device)
        onnx_dir = ctx.store.root / ".cache" / f"pretrained-onnx-{digest(base_model, config.max_seq_length)}"
        on_cpu = resolve_device(config.device) == "cpu"
        if config.backend != "torch" and on_cpu and not has_variant(onnx_dir, config.backend):
            export_onnx(model, onnx_dir, config.max_seq_length, variants=(config.backend,))
        choice = select_encoder(model, onnx_dir, config, texts)
        return encode_texts(choice.encoder, texts, config, description="embedding items (pretrained)")

    key = digest(base_model, config.max_seq_length, config.backend)
    cache = ctx.store.root / ".cache" / f"pretrained-texts-{key}.npz"
    return encode_with_cache(item_texts(read_items(ctx), config.template), cache, encode)


class EvaluationReport:
    def __init__(self, results: Results, extra: dict[str, Any], fairness: dict[str, Any]) -> None:
        self.results = results
        self.extra = extra
        self.fairness = fairness

    def table(self) -> Group:
        return Group(
            metrics_table(self.results, title="full ranking, test split"),
            slice_table(self.results),
            fairness_table(self.fairness),
        )


def evaluate_run(ctx: RunContext, out: Path) -> EvaluationReport:
    from recsys.assemble import candidate_recommender, evaluated_ranker
    from recsys.catalog import ItemCatalog
    from recsys.run_context import read_events, read_items

    config = ctx.config
    ks = sorted(config.evaluation.ks)
    items = read_items(ctx)
    catalog = ItemCatalog.from_items(items)
    split = make_split(
        read_events(ctx),
        catalog,
        config.split.protocol,
        config.split.test_share,
        config.split.min_user_events,
        config.evaluation.max_users,
    )
    recommender = candidate_recommender(ctx, "eval", evaluated_ranker(ctx))
    results, extra, lists = evaluate_recommender(recommender, split, ks, config.recommend.chunk_users)
    names = list(config.evaluation.baselines)
    vectors = pretrained_vectors(ctx) if "pretrained_text" in names else None
    baseline_lists: dict[str, np.ndarray] = {}
    codes = category_codes(items, catalog)
    results.update(
        run_baselines(split, names, vectors, ks, config.retrieval.popular_days, baseline_lists, codes)
    )
    lists.update({name: exposed(topk) for name, topk in baseline_lists.items()})
    current = ctx.store.current()
    if current is not None and current != ctx.run_id:
        try:
            key = f"{PROMOTED}{current}"
            results[key], lists[key] = evaluate_promoted(ctx, current, split, ks)
        except Exception as error:  # e.g. a run written by an older recsys: the gate falls back
            console.print(f"[yellow]warning:[/] could not re-score promoted run {current}: {error}")
            extra["promoted_rescore_error"] = f"{current}: {error}"
    extra.update(
        {"protocol": split.protocol, "test_users": len(split.histories), "test_events": split.test.height}
    )
    fairness = fairness_report(ItemGroups.build(items, catalog, split.train), lists, split.histories)
    write_report(results, out / "report.json", meta=extra, fairness=fairness)
    (out / "summary.json").write_text(
        json.dumps({**extra, "recsys": results["recsys"]["all"]}, indent=2) + "\n"
    )
    return EvaluationReport(results, extra, fairness)
