"""Assemble the run report: one HTML file with plotly.js inline, so it opens anywhere without network."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from recsys.artifacts import atomic_write_text
from recsys.report import figures

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from recsys.experiments import ExperimentAnalysis
    from recsys.inspect import RunInspector

SEPARATING_FEATURES = 6
STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 24px 48px; }
h1 { margin-top: 24px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 40px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; }
p.note { color: #555; max-width: 900px; }
.chart { margin: 12px 0; }
"""


def _html_table(frame: pl.DataFrame, digits: int = 4) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return html.escape("-" if value is None else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs)
    return f"<table>{rows}</table>"


class _Page:
    """Sections of headings, notes, tables and charts, rendered in order."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.charts = 0

    def section(self, title: str, note: str = "") -> None:
        self.parts.append(f"<h2>{html.escape(title)}</h2>")
        if note:
            self.parts.append(f'<p class="note">{html.escape(note)}</p>')

    def raw(self, fragment: str) -> None:
        self.parts.append(fragment)

    def chart(self, figure: go.Figure) -> None:
        import plotly.io as pio

        self.charts += 1
        self.parts.append(
            '<div class="chart">'
            + pio.to_html(
                figure,
                full_html=False,
                include_plotlyjs=False,
                div_id=f"chart-{self.charts}",
                config={"displaylogo": False, "responsive": True},
            )
            + "</div>"
        )

    def render(self, title: str) -> str:
        from plotly.offline import get_plotlyjs

        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head>"
            f"<body data-charts='{self.charts}'><h1>{html.escape(title)}</h1>"
            + "\n".join(self.parts)
            + "</body></html>\n"
        )


def _overview(inspector: RunInspector) -> str:
    manifest = inspector.manifest
    stats = manifest["data"].get("stats", {})
    ranker = manifest.get("ranker", {})
    meta = inspector.evaluation.get("meta", {})
    pairs: list[tuple[str, Any]] = [
        ("run", inspector.run_dir.name),
        ("status", manifest.get("status", "")),
        ("created", manifest.get("created_at", "")),
        ("code version", manifest.get("code_version") or "unknown"),
        ("data", manifest["data"].get("source", "")),
        *[(f"data: {name}", value) for name, value in stats.items() if not isinstance(value, dict | list)],
        ("evaluation protocol", meta.get("protocol", "")),
        ("test users", meta.get("test_users", "")),
        ("candidate recall (ranker ceiling)", f"{meta.get('candidates_recall', float('nan')):.4f}"),
        ("ranker trees", ranker.get("best_iteration", "")),
        ("ranker valid NDCG@10", f"{ranker.get('valid_ndcg@10', float('nan')):.4f}"),
        ("ranker features", len(inspector.features)),
    ]
    return _key_values(pairs)


def _metrics_table(metrics: pl.DataFrame) -> pl.DataFrame:
    wanted = [m for m in figures.HEADLINE_METRICS if m in set(metrics["metric"])]
    return (
        metrics.filter((pl.col("slice") == "all") & pl.col("metric").is_in(wanted))
        .pivot(on="metric", index="model", values="value")
        .select("model", *wanted)
    )


def _fairness(page: _Page, section: dict[str, Any]) -> None:
    """Who gets exposure: the evaluation's fairness section, every evaluated list set side by side."""
    from recsys.evaluation.fairness import exposure_frame, summary_frame

    k = section["k"]
    page.section(
        "Fairness: who gets exposure",
        f"Top-{k} slots on the test split by item group, against each group's share of the catalog and "
        "of the training events. Gini: concentration of exposure over all catalog items (0: equal). "
        "Long tail: items outside the top 20% by training events (the catalog's share is 0.8). "
        "Calibration: mean KL divergence between the categories of a user's history and of their list "
        "(Steck 2018; 0: the list mirrors the history).",
    )
    page.raw(_html_table(summary_frame(section)))
    titles = {
        "popularity_decile": ("Exposure by popularity decile (D1: the most popular 10% of items)", "decile"),
        "category": ("Exposure by category (the item's first category)", "category"),
        "age": ("Exposure by item age (created_at, else first training event)", "age"),
    }
    for dimension, (title, axis) in titles.items():
        if dimension in section["groups"]:
            page.chart(figures.exposure_by_group(exposure_frame(section, dimension), title, axis))


def build_report(inspector: RunInspector, path: Path, waterfall_users: int = 3) -> Path:
    """Compute every view of ``inspector``'s run and write the report to ``path`` (atomically)."""
    page = _Page()
    page.section("Run")
    page.raw(_overview(inspector))

    metrics = inspector.metrics()
    page.section(
        "Metrics against baselines",
        "Full ranking over the catalog minus seen items on the run's temporal test split; every model "
        "evaluated in the same process on the same users. source:<name> is one candidate source alone.",
    )
    page.chart(figures.metrics_vs_baselines(metrics))
    page.raw(_html_table(_metrics_table(metrics)))
    page.chart(figures.by_slice(metrics))

    page.section(
        "Accuracy by user activity",
        "Per-user NDCG@10 of recsys and each of its sources (models fitted on the training part), "
        "averaged within buckets of the user's number of training events.",
    )
    page.chart(figures.by_activity(inspector.activity_buckets()))

    page.section(
        "Cold start",
        "Share of test items found in the top 100, by how many training events the item had: "
        "bucket 0 holds items no one interacted with before the test period.",
    )
    page.chart(figures.cold_start(inspector.cold_start()))

    importance = inspector.importance()
    page.section(
        "Feature importance",
        "Gain: how much each feature improved the ranker's training loss. Mean |contribution|: how much "
        f"it moves today's scores, over the candidates of {len(inspector.sample_users())} sample users.",
    )
    page.chart(figures.importance(importance))

    page.section(
        "Why the top item ranked first: contribution waterfalls",
        "Exact decomposition of the ranker score (LightGBM pred_contrib): bias + contributions = score.",
    )
    for user in inspector.sample_users(waterfall_users, seed=1):
        explained = inspector.user(user, k=1)
        if explained.height:
            title = f"user {user}: #{1} {explained['title'][0] or explained['item_id'][0]}"
            page.chart(figures.waterfall(explained, inspector.features, title))

    distributions = inspector.distributions()
    separating = distributions.head(SEPARATING_FEATURES)["feature"].to_list()
    page.section(
        "Positives vs negatives",
        "The ranker's training frame (labels from the label window): the features whose distributions "
        "differ most between items the user went on to consume and the other candidates (KS distance).",
    )
    page.chart(figures.distributions(inspector.training_frame, separating))
    page.raw(_html_table(distributions.head(12)))

    page.section(
        "Coverage and popularity bias",
        "How the top-10 lists spread over the catalog (Lorenz curve, Gini) and how popular the "
        "recommended items are (popularity percentile by training events) compared with what users consumed.",
    )
    page.chart(figures.exposure(inspector.exposure_curve()))
    bias = inspector.popularity_bias()
    page.chart(figures.popularity_bias(bias))
    page.raw(_html_table(bias))

    fairness = inspector.evaluation.get("fairness")
    if fairness is not None:
        _fairness(page, fairness)

    drift = inspector.drift()
    page.section(
        "Drift since training",
        "Population stability index and KS distance between the ranker's training inputs and the "
        "candidates of sample users as of the run's latest data.",
    )
    page.chart(figures.drift(drift))
    page.raw(_html_table(drift.head(10)))

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page.render(f"recsys report — {inspector.run_dir.name}"))
    return path


def _utc(ts: int | None) -> str:
    from datetime import UTC, datetime

    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def build_experiment_report(analysis: ExperimentAnalysis, path: Path) -> Path:
    """The experiment page: verdict, sample ratio, each arm's metrics with CIs, each arm vs the control."""
    from recsys.experiments import METRICS

    definition = analysis.experiment
    confidence = 1 - analysis.alpha
    page = _Page()
    page.section("Verdict")
    page.raw(
        _key_values(
            [
                ("verdict", analysis.verdict),
                ("summary", analysis.summary),
                ("primary metric", analysis.metric),
                ("status", definition["status"]),
                ("started", definition["started_at"]),
                ("stopped", definition.get("stopped_at") or "-"),
                ("exposures from", _utc(analysis.first_exposure_ts)),
                ("exposures until", _utc(analysis.last_exposure_ts)),
                ("attribution window", f"{definition['window_s']} s"),
                ("click events", ", ".join(definition["click_events"])),
                ("conversion events", ", ".join(definition["conversion_events"])),
                (
                    "events attributed by recommendation id / by window",
                    f"{analysis.outcomes_by_id} / {analysis.outcomes_by_window}",
                ),
            ]
        )
    )
    srm = analysis.srm
    page.section(
        "Sample ratio",
        "Users per arm against the intended split (chi-square). A p-value under 0.001 means the "
        "assignment or the logging lost users unevenly: no difference below can be trusted then.",
    )
    page.raw(
        _html_table(
            pl.DataFrame(
                {
                    "arm": list(srm.users),
                    "users": list(srm.users.values()),
                    "observed share": [n / max(sum(srm.users.values()), 1) for n in srm.users.values()],
                    "intended share": list(srm.expected_share.values()),
                }
            )
        )
    )
    page.raw(
        _key_values(
            [("chi-square", f"{srm.chi2:.3f}"), ("p-value", f"{srm.p_value:.3g}"), ("mismatch", srm.mismatch)]
        )
    )
    page.section(
        "Arms",
        f"Per arm: users exposed, answers served, clicks on shown items and users with a conversion; "
        f"each metric with its {confidence:.0%} confidence interval (delta method over users).",
    )
    rows = []
    for arm in analysis.arms:
        row: dict[str, Any] = {
            "arm": arm.arm,
            "runs": ", ".join(arm.runs),
            "users": arm.users,
            "exposures": arm.exposures,
            "clicks": arm.clicks,
            "converted users": arm.converted_users,
        }
        for name, estimate in arm.metrics.items():
            row[name] = estimate.value
            row[f"{name} CI"] = f"[{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]"
        rows.append(row)
    page.raw(_html_table(pl.DataFrame(rows)))
    for name, description in METRICS.items():
        frame = pl.DataFrame(
            [
                {"arm": arm.arm, "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
                for arm in analysis.arms
                for e in [arm.metrics[name]]
            ]
        )
        page.chart(figures.experiment_arms(frame, name, description))
    page.section(
        "Each arm against the control",
        "Difference (arm − control) with its confidence interval and a two-sided z-test; the level is "
        "split over the arms compared (Bonferroni).",
    )
    page.raw(
        _html_table(
            pl.DataFrame(
                [
                    {
                        "metric": c.metric,
                        "arm": c.arm,
                        "control": c.control,
                        "difference": c.difference.value,
                        "CI": f"[{c.difference.ci_low:+.4f}, {c.difference.ci_high:+.4f}]",
                        "relative": "-" if c.relative is None else f"{c.relative:+.1%}",
                        "p-value": f"{c.p_value:.3g}",
                        "outcome": c.outcome,
                    }
                    for c in analysis.comparisons
                ]
            )
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page.render(f"recsys experiment — {definition['name']}"))
    return path
