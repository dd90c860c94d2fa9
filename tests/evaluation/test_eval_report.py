"""Report tables highlight the best model per column; JSON reports round-trip."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from recsys.evaluation import metrics_table, slice_table, write_report
from recsys.evaluation.report import fairness_table

RESULTS = {
    "popular": {
        "all": {"users": 10.0, "ndcg@10": 0.1, "fit_s": 0.5},
        "cold_items": {"users": 3.0, "ndcg@10": 0.3},
    },
    "ease": {
        "all": {"users": 10.0, "ndcg@10": 0.2, "fit_s": 2.0},
        "cold_items": {"users": 3.0, "ndcg@10": 0.0},
    },
}


def render(table: object) -> str:
    console = Console(record=True, width=200, color_system="truecolor")
    console.print(table)
    return console.export_text(styles=True)


def test_metrics_table_highlights_highest_metric_and_lowest_time() -> None:
    text = render(metrics_table(RESULTS))
    assert "popular" in text and "ease" in text
    lines = {model: next(line for line in text.splitlines() if model in line) for model in RESULTS}
    assert "\x1b[1;32m0.2000" in lines["ease"] and "\x1b[1;32m0.5" in lines["popular"]
    assert "\x1b[1;32m0.1000" not in lines["popular"]


def test_slice_table_shows_slice_sizes_and_per_slice_best() -> None:
    text = render(slice_table(RESULTS, "ndcg@10"))
    assert "cold_items (n=3)" in text and "all (n=10)" in text
    assert "\x1b[1;32m0.3000" in text


def test_write_report_round_trips(tmp_path: Path) -> None:
    path = write_report(RESULTS, tmp_path / "out" / "report.json", meta={"protocol": "per_user"})
    loaded = json.loads(path.read_text())
    assert loaded["results"] == RESULTS
    assert loaded["meta"] == {"protocol": "per_user"}


FAIRNESS = {
    "k": 10,
    "long_tail": {"catalog": 0.8, "training": 0.3},
    "groups": {},
    "models": {
        "popular": {"gini": 0.99, "long_tail_share": 0.0, "calibration_kl": 0.85},
        "ease": {"gini": 0.97, "long_tail_share": 0.01, "calibration_kl": 0.62},
    },
}


def test_fairness_section_sits_beside_results_and_renders(tmp_path: Path) -> None:
    path = write_report(RESULTS, tmp_path / "report.json", fairness=FAIRNESS)
    loaded = json.loads(path.read_text())
    assert loaded["results"] == RESULTS and loaded["fairness"] == FAIRNESS
    text = render(fairness_table(FAIRNESS))
    assert "who gets exposure (top 10)" in text
    assert "0.9900" in text and "0.6200" in text and "0.8000" in text
