"""Full-ranking evaluation: metrics, temporal protocols with slices, baselines and reports."""

from __future__ import annotations

from recsys.evaluation.metrics import ranking_metrics
from recsys.evaluation.protocol import (
    BASELINES,
    EvalSplit,
    SlicedMetrics,
    baseline_scorer,
    evaluate_scorer,
    evaluate_topk,
    make_split,
    run_baselines,
)
from recsys.evaluation.report import metrics_table, slice_table, write_report

__all__ = [
    "BASELINES",
    "EvalSplit",
    "SlicedMetrics",
    "baseline_scorer",
    "evaluate_scorer",
    "evaluate_topk",
    "make_split",
    "metrics_table",
    "ranking_metrics",
    "run_baselines",
    "slice_table",
    "write_report",
]
