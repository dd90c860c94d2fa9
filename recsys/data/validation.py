"""Validation that loses nothing: every bad row goes to a quarantine file with its reason.

Each row gets the first reason that applies (order below). Clean rows are cast to the
canonical schema in :mod:`recsys.data.schema`. Above ``max_bad_share`` bad rows in a
table the whole dataset is refused with a message naming the file, field and examples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys.artifacts import atomic_write_parquet
from recsys.data.readers import find_table, read_table
from recsys.data.schema import CATEGORY_SOURCES, DEFAULT_EVENT, INTERACTIONS_SCHEMA, ITEMS_SCHEMA, TAG_SOURCES

ROW = "row"
REASON = "reason"
FIELD = "field"


class DataValidationError(ValueError):
    """Too many bad rows, or a required column is missing; the message names file, field and rows."""


@dataclass
class TableReport:
    """What validation found in one input file."""

    path: Path
    rows: int
    bad_rows: int
    by_reason: list[dict[str, object]] = field(default_factory=list)
    """One entry per (reason, field): count and up to three example rows."""
    quarantine_path: Path | None = None

    @property
    def bad_share(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0


@dataclass
class Dataset:
    """Validated, canonical tables plus the report of what was set aside."""

    items: pl.DataFrame
    interactions: pl.DataFrame
    items_report: TableReport
    interactions_report: TableReport

    @property
    def stats(self) -> dict[str, int]:
        return {
            "users": self.interactions["user_id"].n_unique(),
            "items": self.items.height,
            "interactions": self.interactions.height,
            "bad_rows": self.items_report.bad_rows + self.interactions_report.bad_rows,
        }

    @property
    def time_range(self) -> tuple[int, int]:
        ts = self.interactions["ts"]
        return int(ts.min()), int(ts.max())  # type: ignore[arg-type]


def _blank(name: str) -> pl.Expr:
    """True where a value is missing or only whitespace."""
    return pl.col(name).is_null() | (pl.col(name).cast(pl.String).str.strip_chars() == "")


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, so bad rows of any type fit one quarantine schema."""
    exprs = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.List | pl.Array):
            exprs.append(pl.col(name).cast(pl.List(pl.String)).list.join("|").alias(name))
        elif isinstance(dtype, pl.Struct):
            exprs.append(pl.col(name).struct.json_encode().alias(name))
        else:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
    return frame.select(exprs)


def _parse_float(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_numeric():
        return pl.col(name).cast(pl.Float64)
    return pl.col(name).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


def _parse_timestamp(name: str, dtype: pl.DataType) -> pl.Expr:
    """Unix seconds from ints, floats, datetimes or text (integer seconds or ISO-8601)."""
    if isinstance(dtype, pl.Datetime):
        return pl.col(name).dt.epoch("s")
    if isinstance(dtype, pl.Date):
        return pl.col(name).cast(pl.Datetime("us")).dt.epoch("s")
    if dtype.is_integer():
        return pl.col(name).cast(pl.Int64)
    if dtype.is_float():
        return pl.when(pl.col(name) == pl.col(name).floor()).then(pl.col(name).cast(pl.Int64))
    text = pl.col(name).cast(pl.String).str.strip_chars()
    as_int = text.cast(pl.Int64, strict=False)
    as_datetime = (
        text.str.replace(r"Z$", "+00:00")
        .str.to_datetime(strict=False, time_unit="us", time_zone="UTC")
        .dt.epoch("s")
    )
    return pl.coalesce(as_int, as_datetime)


def _string_list(frame: pl.DataFrame, sources: tuple[str, ...]) -> pl.Expr:
    """Union of list-like metadata columns; text columns are split on '|'."""
    parts: list[pl.Expr] = []
    for name in sources:
        if name not in frame.columns:
            continue
        dtype = frame.schema[name]
        if isinstance(dtype, pl.List):
            parts.append(pl.col(name).cast(pl.List(pl.String)).fill_null([]))
        else:
            parts.append(
                pl.col(name)
                .cast(pl.String)
                .fill_null("")
                .str.split("|")
                .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
            )
    if not parts:
        return pl.lit([], dtype=pl.List(pl.String))
    combined = parts[0] if len(parts) == 1 else pl.concat_list(parts)
    return combined.list.unique(maintain_order=True)


def _first_reason(checks: list[tuple[str, str, pl.Expr]]) -> tuple[pl.Expr, pl.Expr]:
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    column: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, field_name, condition in reversed(checks):
        reason = pl.when(condition).then(pl.lit(name)).otherwise(reason)
        column = pl.when(condition).then(pl.lit(field_name)).otherwise(column)
    return reason, column


def _require(frame: pl.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(frame.columns)}"
        )


def _split(
    frame: pl.DataFrame, checks: list[tuple[str, str, pl.Expr]], parsed: list[pl.Expr]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(clean rows with parsed columns, bad rows as text with row/reason/field)."""
    reason, column = _first_reason(checks)
    tagged = frame.with_columns(reason.alias(REASON), column.alias(FIELD))
    clean = tagged.filter(pl.col(REASON).is_null()).drop(REASON, FIELD).with_columns(*parsed)
    bad_rows = tagged.filter(pl.col(REASON).is_not_null())
    original = [name for name in frame.columns if name != ROW]
    bad = pl.concat(
        [bad_rows.select(ROW, REASON, FIELD), _as_text(bad_rows.select(original))], how="horizontal"
    )
    return clean, bad


def _report(path: Path, rows: int, bad: pl.DataFrame) -> TableReport:
    by_reason = []
    for (reason, field_name), group in bad.group_by([REASON, FIELD], maintain_order=True):
        by_reason.append(
            {
                "reason": reason,
                "field": field_name,
                "count": group.height,
                "examples": group.head(3).to_dicts(),
            }
        )
    by_reason.sort(key=lambda entry: -int(entry["count"]))
    return TableReport(path=path, rows=rows, bad_rows=bad.height, by_reason=by_reason)


def validate_items(path: Path) -> tuple[pl.DataFrame, pl.DataFrame, TableReport]:
    raw = read_table(path)
    _require(raw, path, ("item_id", "title", "text"))
    frame = raw.with_row_index(ROW, offset=1)
    item_id = pl.col("item_id").cast(pl.String).str.strip_chars()
    created = (
        _parse_timestamp("created_at", raw.schema["created_at"]) if "created_at" in raw.columns else None
    )
    checks: list[tuple[str, str, pl.Expr]] = [
        ("missing_id", "item_id", _blank("item_id")),
        ("empty_text", "text", _blank("text")),
        ("missing_title", "title", _blank("title")),
    ]
    if created is not None:
        checks.append(("bad_timestamp", "created_at", pl.col("created_at").is_not_null() & created.is_null()))
    checks.append(("duplicate", "item_id", ~item_id.is_first_distinct()))
    parsed = [
        item_id.alias("item_id"),
        pl.col("title").cast(pl.String).str.strip_chars().alias("title"),
        pl.col("text").cast(pl.String).str.strip_chars().alias("text"),
        _string_list(raw, CATEGORY_SOURCES).alias("categories"),
        _string_list(raw, TAG_SOURCES).alias("tags"),
        (created if created is not None else pl.lit(None, dtype=pl.Int64)).alias("created_at"),
    ]
    clean, bad = _split(frame, checks, parsed)
    canonical = list(ITEMS_SCHEMA)
    extra = [name for name in clean.columns if name not in canonical and name != ROW]
    clean = clean.select(*[pl.col(name).cast(ITEMS_SCHEMA[name]) for name in canonical], *extra)
    return clean, bad, _report(path, raw.height, bad)


def validate_interactions(
    path: Path, item_ids: pl.Series, as_of: int
) -> tuple[pl.DataFrame, pl.DataFrame, TableReport]:
    raw = read_table(path)
    _require(raw, path, ("user_id", "item_id", "ts"))
    frame = raw.with_row_index(ROW, offset=1)
    ts = _parse_timestamp("ts", raw.schema["ts"])
    item_id = pl.col("item_id").cast(pl.String).str.strip_chars()
    checks: list[tuple[str, str, pl.Expr]] = [
        ("missing_id", "user_id", _blank("user_id")),
        ("missing_id", "item_id", _blank("item_id")),
        ("bad_timestamp", "ts", ts.is_null()),
        ("future_timestamp", "ts", ts > as_of),
    ]
    numeric: dict[str, pl.Expr] = {}
    for name in ("weight", "rating"):
        if name in raw.columns:
            numeric[name] = _parse_float(name, raw.schema[name])
            checks.append((f"bad_{name}", name, ~_blank(name) & numeric[name].is_null()))
            checks.append((f"bad_{name}", name, numeric[name].is_nan() | numeric[name].is_infinite()))
    checks.append(("unknown_item", "item_id", ~item_id.is_in(item_ids.implode())))
    original = [name for name in raw.columns]
    checks.append(("duplicate", "*", ~pl.struct(original).is_first_distinct()))
    rating = numeric.get("rating", pl.lit(None, dtype=pl.Float64))
    weight = pl.coalesce(numeric.get("weight", pl.lit(None, dtype=pl.Float64)), rating, pl.lit(1.0))
    event = (
        pl.col("event").cast(pl.String).str.strip_chars().replace("", None).fill_null(DEFAULT_EVENT)
        if "event" in raw.columns
        else pl.lit(DEFAULT_EVENT)
    )
    parsed = [
        pl.col("user_id").cast(pl.String).str.strip_chars().alias("user_id"),
        item_id.alias("item_id"),
        ts.alias("ts"),
        event.alias("event"),
        weight.alias("weight"),
        rating.alias("rating"),
    ]
    clean, bad = _split(frame, checks, parsed)
    clean = clean.select([pl.col(name).cast(dtype) for name, dtype in INTERACTIONS_SCHEMA.items()])
    return clean, bad, _report(path, raw.height, bad)


def _threshold_message(report: TableReport, max_bad_share: float) -> str:
    lines = [
        f"{report.path}: {report.bad_rows} of {report.rows} rows are bad "
        f"({report.bad_share:.2%} > {max_bad_share:.2%} allowed)"
    ]
    for entry in report.by_reason:
        examples = entry["examples"]
        assert isinstance(examples, list)
        rows = ", ".join(
            f"row {example[ROW]} {entry['field']}={example.get(str(entry['field']))!r}"
            for example in examples
        )
        lines.append(f"  field '{entry['field']}' ({entry['reason']}, {entry['count']} rows): {rows}")
    if report.quarantine_path is not None:
        lines.append(f"  all bad rows: {report.quarantine_path}")
    return "\n".join(lines)


def load_dataset(
    folder: str | Path,
    *,
    max_bad_share: float = 0.01,
    as_of: int | None = None,
    quarantine_dir: str | Path | None = None,
) -> Dataset:
    """Read and validate a dataset folder; bad rows go to ``quarantine_dir`` (if given).

    Raises :class:`DataValidationError` when either table has more than ``max_bad_share``
    bad rows; the quarantine files are written first so nothing is lost.
    """
    as_of = int(time.time()) if as_of is None else as_of
    items_path = find_table(folder, "items")
    interactions_path = find_table(folder, "interactions")
    items, bad_items, items_report = validate_items(items_path)
    interactions, bad_events, events_report = validate_interactions(
        interactions_path, items["item_id"], as_of
    )
    if quarantine_dir is not None:
        for report, bad, name in (
            (items_report, bad_items, "items"),
            (events_report, bad_events, "interactions"),
        ):
            report.quarantine_path = Path(quarantine_dir) / f"{name}.quarantine.parquet"
            atomic_write_parquet(bad, report.quarantine_path)
    failures = [
        _threshold_message(report, max_bad_share)
        for report in (items_report, events_report)
        if report.bad_share > max_bad_share
    ]
    if failures:
        raise DataValidationError("\n".join(failures))
    return Dataset(items, interactions, items_report, events_report)
