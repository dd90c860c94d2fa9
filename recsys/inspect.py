"""Offline inspection of a finished run, as polars DataFrames (the CLI's ``inspect`` and the report).

Per user: ranked candidates with every feature value and its exact contribution; per item:
why it ranked there, or why it was not a candidate. Globally: feature importance (gain and
mean |contribution|), feature distributions for positives vs negatives of the ranker's
training frame, drift between the training window and the latest data (PSI and KS), and
the evaluation views of the report (user-activity buckets, cold start, popularity bias).

Example::

    inspector = RunInspector.open(Path("runs/run-20250101T020000Z"))
    inspector.user("42", k=10)              # one row per item: features, bias, contrib_<feature>
    inspector.item("42", "318").reason      # e.g. "ranked 3 of 500 candidates (retrieved by ...)"
    inspector.importance()                  # feature, gain, mean_abs_contribution, ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.artifacts import RunStore
from recsys.catalog import Histories
from recsys.config import Config, config_of_run
from recsys.ranking.explain import (
    ItemExplanation,
    contribution_column,
    explain_item,
    explain_user,
    recent_history,
    with_contributions,
)

if TYPE_CHECKING:
    from recsys.evaluation.protocol import EvalSplit
    from recsys.moments import Moments, UserMoments
    from recsys.recommend import Recommender
    from recsys.run_context import RunContext

SAMPLE_USERS = 100
"""Users whose candidates are scored for importance and drift (enough for stable means, quick)."""
TRAINING_USERS = 300
"""Users of the ranker's label window rebuilt for positive/negative distributions and drift."""
PSI_BINS = 10
PSI_FLOOR = 1e-4
ACTIVITY_BUCKETS = (5, 20, 50, 100, 250)
"""Upper bounds of the user-activity buckets (training events); the last bucket is open."""
ITEM_POPULARITY_BUCKETS = (0, 3, 10, 50, 200)
"""Upper bounds of the target-item popularity buckets (training events) for cold-start views."""


def resolve_run(config: Config, run_id: str | None = None, runs: Path | None = None) -> Path:
    """The folder of run ``run_id`` (default: the promoted run) under ``runs`` (default: config)."""
    store = RunStore(runs or Path(config.pipeline.runs_dir))
    return store.run_dir(run_id) if run_id else store.current_dir()


def _bucket_labels(bounds: tuple[int, ...], first: int) -> list[str]:
    labels, low = [], first
    for high in bounds:
        labels.append(str(low) if low == high else f"{low}–{high}")
        low = high + 1
    return [*labels, f"{low}+"]


def _bucket(values: np.ndarray, bounds: tuple[int, ...], first: int) -> list[str]:
    labels = _bucket_labels(bounds, first)
    return [labels[i] for i in np.searchsorted(np.asarray(bounds), values, side="left")]


def population_stability(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI of ``current`` against ``reference`` over reference-quantile bins, missing (NaN) as its own bin.

    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """
    ref_present, cur_present = reference[~np.isnan(reference)], current[~np.isnan(current)]
    edges = (
        np.unique(np.quantile(ref_present, np.linspace(0, 1, bins + 1)[1:-1]))
        if len(ref_present)
        else np.zeros(0)
    )

    def shares(values: np.ndarray, present: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
        counts = np.r_[counts, len(values) - len(present)].astype(np.float64)
        return np.maximum(counts / max(len(values), 1), PSI_FLOOR)

    expected, actual = shares(reference, ref_present), shares(current, cur_present)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _ks(first: np.ndarray, second: np.ndarray) -> float | None:
    from scipy.stats import ks_2samp

    first, second = first[~np.isnan(first)], second[~np.isnan(second)]
    if not len(first) or not len(second):
        return None
    return float(ks_2samp(first, second).statistic)


def _column(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()


@dataclass
class RunInspector:
    """Everything ``recsys inspect`` and ``recsys report`` show, computed lazily from one run folder."""

    run_dir: Path

    @classmethod
    def open(cls, run_dir: Path) -> RunInspector:
        if not (run_dir / "manifest.json").exists():
            raise FileNotFoundError(f"{run_dir}: not a finished run (no manifest.json)")
        return cls(run_dir)

    # -- run artifacts --------------------------------------------------------
    @cached_property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads((self.run_dir / "manifest.json").read_text()))

    @cached_property
    def config(self) -> Config:
        return config_of_run(self.manifest["config"])

    @cached_property
    def context(self) -> RunContext:
        from recsys.run_context import RunContext

        return RunContext(
            self.config,
            RunStore(self.run_dir.parent),
            self.run_dir.name,
            Path(self.manifest["data"]["source"]),
        )

    @cached_property
    def recommender(self) -> Recommender:
        """The serving recommender (models fitted on all data), with offline behaviour as of the run."""
        from recsys.assemble import load_recommender

        return load_recommender(self.run_dir)

    @cached_property
    def events(self) -> pl.DataFrame:
        return pl.read_parquet(self.run_dir / "data" / "interactions.parquet")

    @cached_property
    def moments(self) -> Moments:
        """Where this run's batch job places its users in time: the moments its lists describe."""
        from recsys.batch import batch_moments

        return batch_moments(self.recommender, self.events)

    def _moment(self, histories: Histories) -> UserMoments:
        return self.moments.of(histories)

    @cached_property
    def evaluation(self) -> dict[str, Any]:
        return dict(json.loads((self.run_dir / "evaluation" / "report.json").read_text()))

    def _histories(self, user_ids: list[str]) -> Histories:
        return Histories.from_interactions(self.events, self.recommender.catalog, users=user_ids)

    # -- one user, one item -------------------------------------------------------
    def user(self, user_id: str, k: int | None = 20) -> pl.DataFrame:
        """The user's top ``k`` candidates with feature values, ``bias`` and ``contrib_<feature>``."""
        histories = self._histories([user_id])
        return explain_user(self.recommender, user_id, histories, self._moment(histories), k)

    def history(self, user_id: str, n: int = 10) -> pl.DataFrame:
        """The user's ``n`` latest items (newest first) with titles."""
        return recent_history(self.recommender, self._histories([user_id]), user_id, n)

    def item(self, user_id: str, item_id: str) -> ItemExplanation:
        """Why ``item_id`` ranked where it did for ``user_id`` (or why it was not a candidate)."""
        histories = self._histories([user_id])
        return explain_item(self.recommender, user_id, item_id, histories, self._moment(histories))

    # -- global views ---------------------------------------------------------------
    def sample_users(self, n: int = SAMPLE_USERS, seed: int = 0) -> list[str]:
        """A seeded sample of the run's users with history (sorted, so results are reproducible)."""
        users = self.events["user_id"].unique().sort()
        if users.len() > n:
            users = users.sample(n, seed=seed).sort()
        return users.to_list()

    @cached_property
    def latest_candidates(self) -> pl.DataFrame:
        """Sample users' serving candidates as the batch job scores them, with score, bias and every
        contribution."""
        users = self.sample_users()
        assert self.recommender.ranker is not None
        histories = self._histories(users)
        scored = self.recommender.scored_candidates(histories, self.moments.of(histories))
        return with_contributions(self.recommender.ranker, scored)

    @cached_property
    def training_frame(self) -> pl.DataFrame:
        """The shipped ranker's labelled training candidates (history → first half of its label window),
        as trained on, for a seeded sample of at most :data:`TRAINING_USERS` users."""
        from recsys.assemble import candidate_recommender, ranker_sources
        from recsys.ranking.training_set import labelled_candidates
        from recsys.run_context import read_events

        ctx = self.context
        shipped = (ctx.path("split") / "ship_fit.parquet").exists()  # runs before the split had one ranker
        prefix = "ship_" if shipped else ""
        assert self.recommender.ranker is not None
        recommender = candidate_recommender(
            ctx, prefix + "fit", sources=ranker_sources(ctx.config, self.recommender.ranker)
        )
        cap = self.config.ranking.max_users
        users = TRAINING_USERS if cap is None else min(TRAINING_USERS, cap)
        return labelled_candidates(
            recommender,
            read_events(ctx, prefix + "fit"),
            read_events(ctx, prefix + "label_train"),
            users,
            self.config.ranking.seed,
        )

    @property
    def features(self) -> list[str]:
        assert self.recommender.ranker is not None
        return self.recommender.ranker.features

    def importance(self) -> pl.DataFrame:
        """feature, gain, gain_share, split, mean_abs_contribution, contribution_share, rank_gain,
        rank_contribution; sorted by gain. Contributions over :meth:`sample_users`' candidates."""
        assert self.recommender.ranker is not None
        stored = self.recommender.ranker.importance()
        candidates = self.latest_candidates
        frame = pl.DataFrame(
            {
                "feature": self.features,
                "gain": [stored[f]["gain"] for f in self.features],
                "split": [stored[f]["split"] for f in self.features],
                "mean_abs_contribution": [
                    float(np.abs(candidates[contribution_column(f)].to_numpy()).mean()) for f in self.features
                ],
            }
        )
        return (
            frame.with_columns(
                (pl.col("gain") / pl.col("gain").sum()).alias("gain_share"),
                (pl.col("mean_abs_contribution") / pl.col("mean_abs_contribution").sum()).alias(
                    "contribution_share"
                ),
                pl.col("gain").rank("ordinal", descending=True).cast(pl.Int32).alias("rank_gain"),
                pl.col("mean_abs_contribution")
                .rank("ordinal", descending=True)
                .cast(pl.Int32)
                .alias("rank_contribution"),
            )
            .select(
                "feature",
                "gain",
                "gain_share",
                "split",
                "mean_abs_contribution",
                "contribution_share",
                "rank_gain",
                "rank_contribution",
            )
            .sort("gain", descending=True)
        )

    def distributions(self) -> pl.DataFrame:
        """Per feature, positives (label > 0) vs negatives of the ranker's training frame:
        means, medians, missing shares and the KS distance between the two (higher: more separating)."""
        frame = self.training_frame
        positive = frame["label"].to_numpy() > 0
        rows = []
        for name in self.features:
            values = _column(frame, name)
            pos, neg = values[positive], values[~positive]
            rows.append(
                {
                    "feature": name,
                    "positives": int(positive.sum()),
                    "negatives": int((~positive).sum()),
                    "pos_mean": _nan_stat(np.nanmean, pos),
                    "neg_mean": _nan_stat(np.nanmean, neg),
                    "pos_median": _nan_stat(np.nanmedian, pos),
                    "neg_median": _nan_stat(np.nanmedian, neg),
                    "pos_missing": float(np.isnan(pos).mean()) if len(pos) else None,
                    "neg_missing": float(np.isnan(neg).mean()) if len(neg) else None,
                    "ks": _ks(pos, neg),
                }
            )
        return pl.DataFrame(rows).sort("ks", descending=True, nulls_last=True)

    def drift(self) -> pl.DataFrame:
        """Per feature, the ranker's training-window inputs vs today's candidates of sample users:
        PSI, KS, means and missing shares; the features that moved most first."""
        reference, current = self.training_frame, self.latest_candidates
        rows = []
        for name in self.features:
            ref, cur = _column(reference, name), _column(current, name)
            rows.append(
                {
                    "feature": name,
                    "psi": population_stability(ref, cur),
                    "ks": _ks(ref, cur),
                    "train_mean": _nan_stat(np.nanmean, ref),
                    "latest_mean": _nan_stat(np.nanmean, cur),
                    "train_missing": float(np.isnan(ref).mean()),
                    "latest_missing": float(np.isnan(cur).mean()),
                }
            )
        return pl.DataFrame(rows).sort("psi", descending=True)

    # -- evaluation views (the report) ---------------------------------------------
    def metrics(self) -> pl.DataFrame:
        """model, slice, metric, value from the run's evaluation report (recsys, sources, baselines)."""
        rows = [
            {"model": model, "slice": slice_name, "metric": metric, "value": float(value)}
            for model, slices in self.evaluation["results"].items()
            for slice_name, metrics in slices.items()
            for metric, value in metrics.items()
        ]
        schema = {"model": pl.String, "slice": pl.String, "metric": pl.String, "value": pl.Float64}
        return pl.DataFrame(rows, schema=schema)

    @cached_property
    def _evaluation_lists(self) -> tuple[EvalSplit, dict[str, np.ndarray]]:
        """The evaluation split and top-k lists of recsys and each of its sources (models fitted on train)."""
        from recsys.assemble import candidate_recommender, evaluated_ranker
        from recsys.evaluation.protocol import make_split
        from recsys.evaluation.run_eval import split_moments, topk_matrix

        config = self.config
        split = make_split(
            self.events,
            self.recommender.catalog,
            config.split.protocol,
            config.split.test_share,
            config.split.min_user_events,
            config.evaluation.max_users,
        )
        recommender = candidate_recommender(self.context, "eval", evaluated_ranker(self.context))
        users = split.histories.user_ids
        as_of = split_moments(split, config.recommend.as_of)
        k = max(config.evaluation.ks)
        scored = recommender.scored_candidates(split.histories, as_of)
        lists = {"recsys": topk_matrix(recommender.top_k(scored, k), users, k)}
        for source in recommender.sources:
            lists[f"source:{source.name}"] = topk_matrix(source.candidates(split.histories, k), users, k)
        return split, lists

    def activity_buckets(self, k: int = 10) -> pl.DataFrame:
        """model, bucket, users, ndcg@k: accuracy by the user's number of training events."""
        from recsys.evaluation.metrics import ndcg_at_k, relevance

        split, lists = self._evaluation_lists
        train_events = np.asarray([len(items) for items in split.histories.items])
        buckets = _bucket(train_events, ACTIVITY_BUCKETS, 1)
        parts = []
        for model, topk in lists.items():
            ndcg = ndcg_at_k(relevance(topk, split.test_items), split.test_items, k)
            parts.append(pl.DataFrame({"model": model, "bucket": buckets, f"ndcg@{k}": ndcg}))
        order = {label: i for i, label in enumerate(_bucket_labels(ACTIVITY_BUCKETS, 1))}
        return (
            pl.concat(parts)
            .group_by("model", "bucket", maintain_order=True)
            .agg(pl.len().alias("users"), pl.col(f"ndcg@{k}").mean())
            .sort(pl.col("bucket").replace_strict(order), "model")
        )

    def cold_start(self, k: int = 100) -> pl.DataFrame:
        """model, bucket, test_items, recall@k: share of test (user, item) pairs found in the top ``k``,
        by the target item's number of training events (bucket "0" = items never seen in training)."""
        split, lists = self._evaluation_lists
        popularity = split.item_train_events
        pairs_user = np.repeat(np.arange(len(split.test_items)), [len(t) for t in split.test_items])
        pairs_item = np.concatenate(split.test_items) if split.test_items else np.zeros(0, np.int64)
        buckets = _bucket(popularity[pairs_item], ITEM_POPULARITY_BUCKETS, 0)
        parts = []
        for model, topk in lists.items():
            hit = (topk[pairs_user, :k] == pairs_item[:, None]).any(axis=1)
            parts.append(pl.DataFrame({"model": model, "bucket": buckets, "hit": hit}))
        order = {label: i for i, label in enumerate(_bucket_labels(ITEM_POPULARITY_BUCKETS, 0))}
        return (
            pl.concat(parts)
            .group_by("model", "bucket", maintain_order=True)
            .agg(pl.len().alias("test_items"), pl.col("hit").mean().alias(f"recall@{k}"))
            .sort(pl.col("bucket").replace_strict(order), "model")
        )

    def popularity_bias(self, k: int = 10) -> pl.DataFrame:
        """model, coverage, gini, mean_popularity_percentile, top10pct_share of each model's top ``k``
        lists, beside the same figures for the test items themselves (model "test truth")."""
        split, lists = self._evaluation_lists
        percentile = _popularity_percentile(split.item_train_events)
        top_decile = percentile >= 0.9
        exposures = {model: topk[:, :k][topk[:, :k] >= 0] for model, topk in lists.items()}
        exposures["test truth"] = np.concatenate(split.test_items)
        rows = []
        for model, items in exposures.items():
            counts = np.bincount(items, minlength=split.n_items)
            rows.append(
                {
                    "model": model,
                    "coverage": float((counts > 0).mean()),
                    "gini": _gini(counts),
                    "mean_popularity_percentile": float(percentile[items].mean()),
                    "top10pct_share": float(top_decile[items].mean()),
                }
            )
        return pl.DataFrame(rows)

    def exposure_curve(self, k: int = 10, points: int = 101) -> pl.DataFrame:
        """model, item_share, exposure_share: Lorenz curves of how recommendations spread over the catalog."""
        split, lists = self._evaluation_lists
        grid = np.linspace(0, 1, points)
        parts = []
        for model, topk in lists.items():
            items = topk[:, :k][topk[:, :k] >= 0]
            counts = np.sort(np.bincount(items, minlength=split.n_items))
            cumulative = np.r_[0.0, np.cumsum(counts)] / max(counts.sum(), 1)
            share = np.interp(grid * split.n_items, np.arange(split.n_items + 1), cumulative)
            parts.append(pl.DataFrame({"model": model, "item_share": grid, "exposure_share": share}))
        return pl.concat(parts)


def _nan_stat(stat: Any, values: np.ndarray) -> float | None:
    return float(stat(values)) if np.isfinite(values).any() else None


def _gini(counts: np.ndarray) -> float:
    """0: every item recommended equally often; 1: one item takes every slot."""
    ordered = np.sort(counts).astype(np.float64)
    n = len(ordered)
    if not n or ordered.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ ordered / (n * ordered.sum()))


def _popularity_percentile(events: np.ndarray) -> np.ndarray:
    """Each item's share of catalog items with fewer training events (0: least, ~1: most popular)."""
    ordered = np.sort(events)
    return np.searchsorted(ordered, events, side="left") / max(len(events), 1)
