"""Evaluation results as rich tables (models x metrics, models x slices) and as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from recsys.artifacts import atomic_write_json

Results = Mapping[str, Mapping[str, Mapping[str, float]]]
"""Model name -> slice name -> metric name -> value (the output of ``run_baselines``)."""

LOWER_IS_BETTER_SUFFIX = "_s"
"""Timings (fit_s, score_s): the smallest is best."""
NOT_RANKED = frozenset({"users"})


def _best(values: list[float | None], lower_is_better: bool) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if lower_is_better else max(present)


def _format(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "users":
        return f"{value:.0f}"
    if metric.endswith(LOWER_IS_BETTER_SUFFIX):
        return f"{value:.1f}"
    return f"{value:.4f}"


def _table(title: str, row_label: str, rows: Mapping[str, Mapping[str, float]], columns: list[str]) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column(row_label, style="cyan")
    for column in columns:
        table.add_column(column, justify="right")
    best = {
        column: _best([rows[r].get(column) for r in rows], column.endswith(LOWER_IS_BETTER_SUFFIX))
        for column in columns
        if column not in NOT_RANKED
    }
    for name, values in rows.items():
        cells = []
        for column in columns:
            value = values.get(column)
            text = _format(value, column)
            if value is not None and len(rows) > 1 and best.get(column) == value:
                text = f"[bold green]{text}[/]"
            cells.append(text)
        table.add_row(name, *cells)
    return table


def _columns(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for values in rows.values():
        seen.update(dict.fromkeys(values))
    return list(seen)


def metrics_table(results: Results, slice_name: str = "all", title: str | None = None) -> Table:
    """Models as rows, metrics as columns, the best value per column in bold green."""
    rows = {model: slices.get(slice_name, {}) for model, slices in results.items()}
    return _table(title or f"metrics ({slice_name})", "model", rows, _columns(rows))


def slice_table(results: Results, metric: str = "ndcg@10", title: str | None = None) -> Table:
    """Models as rows, slices as columns (each header shows the slice's user count) for one metric."""
    slice_names = _columns({model: dict.fromkeys(slices, 0.0) for model, slices in results.items()})
    users = {
        name: next((s[name].get("users") for s in results.values() if name in s), None)
        for name in slice_names
    }
    headers = {
        name: f"{name} (n={users[name]:.0f})" if users[name] is not None else name for name in slice_names
    }
    rows = {
        model: {headers[name]: slices[name][metric] for name in slice_names if metric in slices.get(name, {})}
        for model, slices in results.items()
    }
    return _table(title or f"{metric} by slice", "model", rows, [headers[name] for name in slice_names])


def fairness_table(section: Mapping[str, Any], title: str | None = None) -> Table:
    """Models as rows: Gini of exposure, long-tail share and calibration of their top-k lists."""
    rows = {
        model: {key: values[key] for key in ("gini", "long_tail_share", "calibration_kl")}
        for model, values in section["models"].items()
    }
    table = Table(title=title or f"who gets exposure (top {section['k']})", header_style="bold")
    table.add_column("model", style="cyan")
    for column in ("gini", "long_tail_share", "calibration_kl"):
        table.add_column(column, justify="right")
    for model, values in rows.items():
        table.add_row(model, *(f"{value:.4f}" for value in values.values()))
    table.add_row("catalog", "-", f"{section['long_tail']['catalog']:.4f}", "-", style="dim")
    return table


def write_report(
    results: Results,
    path: str | Path,
    meta: Mapping[str, Any] | None = None,
    fairness: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{"meta": ..., "results": ...}`` (and the exposure analysis, ``"fairness"``) as JSON.

    The fairness section sits beside ``results``, not inside it: ``results`` stays models x slices x
    scalar metrics, which the tables, the manifest and the report read as such.
    """
    path = Path(path)
    payload: dict[str, Any] = {
        "meta": dict(meta or {}),
        "results": {m: {s: dict(v) for s, v in r.items()} for m, r in results.items()},
    }
    if fairness is not None:
        payload["fairness"] = dict(fairness)
    atomic_write_json(path, payload)
    return path
