"""Plotly figures for the run report, each built from one polars DataFrame of :mod:`recsys.inspect`."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from recsys.ranking.explain import BIAS, contribution_column

if TYPE_CHECKING:
    import plotly.graph_objects as go

HEADLINE_METRICS = ("ndcg@10", "recall@10", "mrr", "hr@10", "ndcg@100", "recall@100")
OURS = "recsys"
OURS_COLOR = "#d62728"
WATERFALL_FEATURES = 8
HISTOGRAM_ROWS = 20_000
"""Rows per class drawn in feature histograms (keeps the HTML small on big runs)."""


def _layout(figure: go.Figure, title: str, height: int = 420, **axes: str) -> go.Figure:
    figure.update_layout(
        title=title,
        height=height,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60, "b": 60},
        legend={"orientation": "h", "y": -0.2},
        barmode="group",
    )
    if "x" in axes:
        figure.update_xaxes(title_text=axes["x"])
    if "y" in axes:
        figure.update_yaxes(title_text=axes["y"])
    return figure


MODEL_COLORS = {
    OURS: OURS_COLOR,
    "source:semantic": "#ff7f0e",
    "source:covisit": "#2ca02c",
    "source:popular": "#9467bd",
    "source:ease": "#17becf",
    "popular": "#8c564b",
    "popular_recent": "#e377c2",
    "itemknn": "#bcbd22",
    "als": "#1f77b4",
    "ease": "#7f7f7f",
    "pretrained_text": "#aec7e8",
    "test truth": "#444444",
    "catalog": "#999999",
    "training events": "#444444",
}
REFERENCE_MODELS = ("catalog", "training events")
"""Rows of an exposure frame that are reference shares, drawn as lines over the models' bars."""
EXTRA_COLORS = ("#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")


def _color(model: str) -> str:
    """The same model keeps the same color in every chart of the report."""
    return MODEL_COLORS.get(model) or EXTRA_COLORS[zlib.crc32(model.encode()) % len(EXTRA_COLORS)]


def _bar_color(model: str) -> dict[str, str]:
    return {"color": _color(model)}


def metrics_vs_baselines(metrics: pl.DataFrame) -> go.Figure:
    """Headline metrics (slice "all") per model, recsys in red."""
    import plotly.graph_objects as go

    frame = metrics.filter((pl.col("slice") == "all") & pl.col("metric").is_in(HEADLINE_METRICS))
    present = [m for m in HEADLINE_METRICS if m in set(frame["metric"])]
    figure = go.Figure()
    for model in frame["model"].unique(maintain_order=True):
        values = dict(frame.filter(pl.col("model") == model).select("metric", "value").iter_rows())
        figure.add_bar(name=model, x=present, y=[values.get(m) for m in present], marker=_bar_color(model))
    return _layout(
        figure, "Full-ranking metrics on the test split: recsys vs sources and baselines", y="value"
    )


def by_slice(metrics: pl.DataFrame, metric: str = "ndcg@10") -> go.Figure:
    """One metric per evaluation slice (all, cold items, sparse and heavy users) per model."""
    import plotly.graph_objects as go

    frame = metrics.filter(pl.col("metric") == metric)
    users = dict(
        metrics.filter((pl.col("metric") == "users") & (pl.col("model") == OURS))
        .select("slice", "value")
        .iter_rows()
    )
    slices = frame["slice"].unique(maintain_order=True).to_list()
    labels = [f"{name} (n={users[name]:.0f})" if name in users else name for name in slices]
    figure = go.Figure()
    for model in frame["model"].unique(maintain_order=True):
        values = dict(frame.filter(pl.col("model") == model).select("slice", "value").iter_rows())
        figure.add_bar(name=model, x=labels, y=[values.get(s) for s in slices], marker=_bar_color(model))
    return _layout(figure, f"{metric} by slice", y=metric)


def by_activity(buckets: pl.DataFrame) -> go.Figure:
    """NDCG by the user's number of training events, recsys against each of its sources."""
    import plotly.graph_objects as go

    metric = next(c for c in buckets.columns if c.startswith("ndcg@"))
    users = dict(buckets.filter(pl.col("model") == OURS).select("bucket", "users").iter_rows())
    figure = go.Figure()
    for model in buckets["model"].unique(maintain_order=True):
        part = buckets.filter(pl.col("model") == model)
        labels = [f"{b} (n={users.get(b, 0)})" for b in part["bucket"]]
        figure.add_bar(name=model, x=labels, y=part[metric].to_list(), marker=_bar_color(model))
    return _layout(figure, f"{metric} by user activity", x="training events per user", y=metric)


def cold_start(buckets: pl.DataFrame) -> go.Figure:
    """Recall of test items by how many training events the item had (0 = brand-new items)."""
    import plotly.graph_objects as go

    metric = next(c for c in buckets.columns if c.startswith("recall@"))
    counts = dict(buckets.filter(pl.col("model") == OURS).select("bucket", "test_items").iter_rows())
    figure = go.Figure()
    for model in buckets["model"].unique(maintain_order=True):
        part = buckets.filter(pl.col("model") == model)
        labels = [f"{b} (n={counts.get(b, 0)})" for b in part["bucket"]]
        figure.add_bar(name=model, x=labels, y=part[metric].to_list(), marker=_bar_color(model))
    return _layout(
        figure,
        f"Cold start: {metric} of test items by item popularity",
        x="training events per item",
        y=metric,
    )


def importance(frame: pl.DataFrame, top: int = 20) -> go.Figure:
    """Gain share (training) beside mean |contribution| share (today's candidates), top features by gain."""
    import plotly.graph_objects as go

    shown = frame.sort("gain", descending=True).head(top).reverse()
    figure = go.Figure()
    figure.add_bar(name="gain share", y=shown["feature"], x=shown["gain_share"], orientation="h")
    figure.add_bar(
        name="mean |contribution| share", y=shown["feature"], x=shown["contribution_share"], orientation="h"
    )
    return _layout(figure, "Feature importance", height=max(420, 24 * shown.height + 120), x="share of total")


def waterfall(explained: pl.DataFrame, features: list[str], title: str) -> go.Figure:
    """How the top item's score is built: bias, the largest contributions, the rest, the score."""
    import plotly.graph_objects as go

    row = explained.row(0, named=True)
    pairs = sorted(((f, float(row[contribution_column(f)])) for f in features), key=lambda p: -abs(p[1]))
    shown, rest = pairs[:WATERFALL_FEATURES], pairs[WATERFALL_FEATURES:]
    labels = ["bias", *[f"{name} = {_short(row[name])}" for name, _ in shown], f"{len(rest)} other features"]
    values = [float(row[BIAS]), *[value for _, value in shown], sum(value for _, value in rest)]
    figure = go.Figure(
        go.Waterfall(
            orientation="v",
            x=[*labels, "score"],
            y=[*values, float(row["score"])],
            measure=["relative"] * len(values) + ["total"],
            connector={"line": {"color": "#888"}},
        )
    )
    figure = _layout(figure, title, height=460, y="contribution to the ranker score")
    figure.update_layout(showlegend=False)
    return figure


def _short(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def exposure(curve: pl.DataFrame) -> go.Figure:
    """Lorenz curves of top-10 exposure over the catalog (the diagonal: every item shown equally)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], name="equal exposure", line={"dash": "dot", "color": "#999"})
    for model in curve["model"].unique(maintain_order=True):
        part = curve.filter(pl.col("model") == model)
        line = {"color": _color(model), "width": 3 if model == OURS else 2}
        figure.add_scatter(x=part["item_share"], y=part["exposure_share"], name=model, line=line)
    return _layout(
        figure,
        "Coverage: cumulative share of recommendations over the catalog",
        x="share of items",
        y="share of slots",
    )


def popularity_bias(frame: pl.DataFrame) -> go.Figure:
    """Coverage, Gini, mean popularity percentile and head share of the top-10s beside the test truth."""
    import plotly.graph_objects as go

    columns = ["coverage", "gini", "mean_popularity_percentile", "top10pct_share"]
    figure = go.Figure()
    for row in frame.iter_rows(named=True):
        figure.add_bar(
            name=row["model"], x=columns, y=[row[c] for c in columns], marker=_bar_color(row["model"])
        )
    return _layout(figure, "Popularity bias of the top-10 lists (test truth: what users actually consumed)")


def exposure_by_group(frame: pl.DataFrame, title: str, axis: str) -> go.Figure:
    """Share of top-10 slots per item group and model; the catalog's and training's shares as lines."""
    import plotly.graph_objects as go

    groups = frame["group"].unique(maintain_order=True).to_list()
    figure = go.Figure()
    for model in frame["model"].unique(maintain_order=True):
        shares = dict(frame.filter(pl.col("model") == model).select("group", "share").iter_rows())
        values = [shares.get(group) for group in groups]
        if model in REFERENCE_MODELS:
            line = {"color": _color(model), "dash": "dot", "width": 2}
            figure.add_scatter(name=model, x=groups, y=values, mode="lines+markers", line=line)
        else:
            figure.add_bar(name=model, x=groups, y=values, marker=_bar_color(model))
    return _layout(figure, title, x=axis, y="share of top-10 slots")


def drift(frame: pl.DataFrame, top: int = 15) -> go.Figure:
    """PSI of the features that moved most between the training window and today."""
    import plotly.graph_objects as go

    shown = frame.sort("psi", descending=True).head(top).reverse()
    colors = ["#d62728" if v > 0.25 else "#ff7f0e" if v > 0.1 else "#2ca02c" for v in shown["psi"]]
    figure = go.Figure(go.Bar(y=shown["feature"], x=shown["psi"], orientation="h", marker={"color": colors}))
    return _layout(
        figure,
        "Drift: PSI training window vs latest data (green < 0.1 stable, orange moderate, red > 0.25 major)",
        height=max(420, 24 * shown.height + 120),
        x="PSI",
    )


def distributions(training: pl.DataFrame, features: list[str]) -> go.Figure:
    """Histograms of the most separating features, positives vs negatives of the ranker's training frame."""
    from plotly.subplots import make_subplots

    columns = 3
    rows = max(1, -(-len(features) // columns))
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=features)
    positive = training["label"] > 0
    for position, name in enumerate(features):
        row, col = position // columns + 1, position % columns + 1
        for label, part, color in (
            ("positives", training.filter(positive), "#d62728"),
            ("negatives", training.filter(~positive), "#1f77b4"),
        ):
            values = part[name].cast(pl.Float64).drop_nulls().drop_nans()
            if values.len() > HISTOGRAM_ROWS:
                values = values.sample(HISTOGRAM_ROWS, seed=0)
            figure.add_histogram(
                x=values.to_list(),
                name=label,
                histnorm="probability",
                opacity=0.6,
                marker={"color": color},
                nbinsx=30,
                showlegend=position == 0,
                legendgroup=label,
                row=row,
                col=col,
            )
    figure = _layout(
        figure, "Positives vs negatives (ranker training frame), most separating features", 300 * rows
    )
    figure.update_layout(barmode="overlay")
    return figure


def experiment_arms(frame: pl.DataFrame, metric: str, description: str) -> go.Figure:
    """One metric per experiment arm with its confidence interval (columns arm, value, ci_low, ci_high)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for row in frame.iter_rows(named=True):
        error = {
            "type": "data",
            "symmetric": False,
            "array": [row["ci_high"] - row["value"]],
            "arrayminus": [row["value"] - row["ci_low"]],
        }
        arm = row["arm"]
        figure.add_bar(name=arm, x=[arm], y=[row["value"]], error_y=error, marker=_bar_color(arm))
    return _layout(figure, f"{metric}: {description}", height=360, x="arm", y=metric)
