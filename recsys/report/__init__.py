"""One self-contained HTML report of a run: metrics vs baselines, slices, features, explanations, bias."""

from __future__ import annotations

from recsys.report.build import build_report

__all__ = ["build_report"]
