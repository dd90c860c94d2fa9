"""One self-contained HTML report of a run (metrics vs baselines, slices, features, explanations, bias)
or of an online experiment."""

from __future__ import annotations

from recsys.report.build import build_experiment_report, build_report

__all__ = ["build_experiment_report", "build_report"]
