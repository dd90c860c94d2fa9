"""Validation that loses nothing: every bad row goes to a quarantine file with its reason.

Each row gets the first reason that applies (order below). Clean rows are cast to the
canonical schema in :mod:`recsys.data.schema`. Above ``max_bad_share`` bad rows in a
table the whole dataset is refused with a message naming the file, field and example rows.

Whatever the file holds, the outcome is a :class:`DataValidationError` or a dataset, never
another exception: a value of the wrong type (a list where an id belongs), undecodable bytes,
a non-finite or out-of-range timestamp are reasons for a row, not crashes. Messages name
file, row and field, never the value: input rows may be personal data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys.artifacts import atomic_write_parquet
from recsys.data.errors import DataValidationError
from recsys.data.readers import REPLACEMENT, find_table, read_table
from recsys.data.schema import CATEGORY_SOURCES, DEFAULT_EVENT, INTERACTIONS_SCHEMA, ITEMS_SCHEMA, TAG_SOURCES

ROW = "row"
REASON = "reason"
FIELD = "field"
MIN_TS = -62_135_596_800
"""0001-01-01T00:00:00Z: the earliest instant a datetime can hold."""
MAX_TS = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest instant a datetime can hold."""
_FLAG = "__bad_{}__{}"
"""Hidden per-row flag columns set by the type screen (dropped before anything is written)."""
ITEM_SCALARS = ("item_id", "title", "text", "created_at")
INTERACTION_SCALARS = ("user_id", "item_id", "ts", "event", "weight", "rating")
LIST_COLUMNS = (*CATEGORY_SOURCES, *TAG_SOURCES)

__all__ = ["DataValidationError", "Dataset", "TableReport", "load_dataset"]


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
        if isinstance(dtype, pl.List | pl.Array) and not _nested(dtype.inner):
            exprs.append(pl.col(name).cast(pl.List(pl.String)).list.join("|").alias(name))
        elif isinstance(dtype, pl.List | pl.Array):
            exprs.append(pl.struct(pl.col(name).alias("value")).struct.json_encode().alias(name))
        elif isinstance(dtype, pl.Struct):
            exprs.append(pl.col(name).struct.json_encode().alias(name))
        elif isinstance(dtype, pl.Binary):  # may not be UTF-8: kept as hex, nothing lost
            exprs.append(pl.col(name).bin.encode("hex").alias(name))
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
    if dtype.is_integer() or dtype == pl.Boolean:
        seconds = pl.col(name).cast(pl.Int64, strict=False)
    elif dtype.is_float():  # whole seconds only; NaN, inf and huge values become null (a bad row)
        whole = pl.col(name).is_finite() & (pl.col(name) == pl.col(name).floor())
        seconds = pl.when(whole).then(pl.col(name).cast(pl.Int64, strict=False))
    else:
        text = pl.col(name).cast(pl.String).str.strip_chars()
        as_int = text.cast(pl.Int64, strict=False)
        as_datetime = (
            text.str.replace(r"Z$", "+00:00")
            .str.to_datetime(strict=False, time_unit="us", time_zone="UTC")
            .dt.epoch("s")
        )
        seconds = pl.coalesce(as_int, as_datetime)
    return pl.when(seconds.is_between(MIN_TS, MAX_TS)).then(seconds)


def _string_list(frame: pl.DataFrame, sources: tuple[str, ...]) -> pl.Expr:
    """Union of list-like metadata columns; text columns are split on '|'."""
    parts: list[pl.Expr] = []
    for name in sources:
        if name not in frame.columns:
            continue
        dtype = frame.schema[name]
        if isinstance(dtype, pl.List | pl.Array):
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


def _read(path: Path, required: tuple[str, ...]) -> pl.DataFrame:
    raw = read_table(path)
    if raw.height == 0:
        raise DataValidationError(f"{path}: no rows (a header only, or an empty file)")
    _require(raw, path, required)
    return raw


def _nested(dtype: object) -> bool:
    return isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Object)


def _scalar_ok(dtype: object) -> bool:
    """A dtype every parser here can cast from (text, numbers, booleans, dates)."""
    return (isinstance(dtype, pl.DataType) and dtype.is_numeric()) or isinstance(
        dtype, pl.String | pl.Boolean | pl.Null | pl.Datetime | pl.Date | pl.Categorical
    )


def _list_ok(dtype: pl.DataType) -> bool:
    return _scalar_ok(dtype) or (isinstance(dtype, pl.List | pl.Array) and _scalar_ok(dtype.inner))


def _utf8_or_none(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _screen(
    frame: pl.DataFrame, scalars: tuple[str, ...], json_source: bool
) -> tuple[pl.DataFrame, list[tuple[str, str, pl.Expr]]]:
    """Make every column the checks read castable, and flag the rows that held something else.

    Undecodable text (U+FFFD from the reader, or Binary that is not UTF-8) is ``bad_encoding``
    in any column; a list, object or other nested value where a scalar belongs is
    ``wrong_type`` (in JSON lines, polars turns a list among strings into its JSON text).
    Flags are hidden columns of the returned frame, computed from the original values.
    """
    replaced: list[pl.Expr] = []
    flags: list[pl.Expr] = []
    checks: list[tuple[str, str, pl.Expr]] = []

    def flag(reason: str, name: str, condition: pl.Expr) -> None:
        hidden = _FLAG.format(reason, name)
        flags.append(condition.fill_null(False).alias(hidden))
        checks.append((reason, name, pl.col(hidden)))

    for name, dtype in frame.schema.items():
        if name == ROW:
            continue
        original = pl.col(name)
        if isinstance(dtype, pl.Binary):
            decoded = original.map_elements(_utf8_or_none, return_dtype=pl.String, skip_nulls=True)
            replaced.append(decoded.alias(name))
            flag("bad_encoding", name, original.is_not_null() & decoded.is_null())
        elif isinstance(dtype, pl.String):
            flag("bad_encoding", name, original.str.contains(REPLACEMENT, literal=True))
            if json_source and name in ("user_id", "item_id"):
                flag("wrong_type", name, original.str.contains(r"^\s*[\[{]"))
        elif (name in scalars and not _scalar_ok(dtype)) or (name in LIST_COLUMNS and not _list_ok(dtype)):
            replaced.append(pl.lit(None, dtype=pl.String).alias(name))
            flag("wrong_type", name, original.is_not_null())
    return frame.with_columns(*flags, *replaced), checks


def _id(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String).str.strip_chars()


def _id_checks(names: tuple[str, ...]) -> list[tuple[str, str, pl.Expr]]:
    """Missing ids first, then ids holding control characters (they break logs, keys and terminals)."""
    missing = [("missing_id", name, _blank(name)) for name in names]
    control = [("bad_id", name, _id(name).str.contains(r"\p{Cc}")) for name in names]
    return missing + control


def _none_of(checks: list[tuple[str, str, pl.Expr]]) -> pl.Expr:
    return ~pl.any_horizontal([condition.fill_null(False) for _, _, condition in checks])


def _split(
    frame: pl.DataFrame,
    work: pl.DataFrame,
    checks: list[tuple[str, str, pl.Expr]],
    parsed: list[pl.Expr],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(clean rows with parsed columns, bad rows as their original text with row/reason/field)."""
    reason, column = _first_reason(checks)
    tagged = work.with_columns(reason.alias(REASON), column.alias(FIELD))
    hidden = [name for name in work.columns if name not in frame.columns]
    clean = tagged.filter(pl.col(REASON).is_null()).drop(REASON, FIELD, *hidden).with_columns(*parsed)
    tags = tagged.filter(pl.col(REASON).is_not_null()).select(ROW, REASON, FIELD)
    original = frame.filter(pl.col(ROW).is_in(tags[ROW].implode())).drop(ROW)
    return clean, pl.concat([tags, _as_text(original)], how="horizontal")


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
    """Items: one row per id. The same id with different title or text is ``conflicting_duplicate``
    in every row (no way to know which is right); an id repeated with the same text keeps its first row.
    """
    raw = _read(path, ("item_id", "title", "text"))
    frame = raw.with_row_index(ROW, offset=1)
    work, checks = _screen(frame, ITEM_SCALARS, path.suffix != ".parquet" and path.suffix != ".csv")
    item_id = _id("item_id")
    title = pl.col("title").cast(pl.String).str.strip_chars()
    text = pl.col("text").cast(pl.String).str.strip_chars()
    created = (
        _parse_timestamp("created_at", work.schema["created_at"]) if "created_at" in raw.columns else None
    )
    checks += _id_checks(("item_id",))
    checks += [("empty_text", "text", _blank("text")), ("missing_title", "title", _blank("title"))]
    if created is not None:
        checks.append(("bad_timestamp", "created_at", pl.col("created_at").is_not_null() & created.is_null()))
    valid = _none_of(checks)
    versions = pl.when(valid).then(pl.concat_str([title, text], separator="\x1f")).drop_nulls().n_unique()
    checks.append(("conflicting_duplicate", "item_id", versions.over(item_id) > 1))
    checks.append(("duplicate", "item_id", valid & (pl.col(ROW).rank("ordinal").over(item_id, valid) > 1)))
    parsed = [
        item_id.alias("item_id"),
        title.alias("title"),
        text.alias("text"),
        _string_list(work, CATEGORY_SOURCES).alias("categories"),
        _string_list(work, TAG_SOURCES).alias("tags"),
        (created if created is not None else pl.lit(None, dtype=pl.Int64)).alias("created_at"),
    ]
    clean, bad = _split(frame, work, checks, parsed)
    canonical = list(ITEMS_SCHEMA)
    extra = [name for name in clean.columns if name not in canonical and name != ROW]
    clean = clean.select(*[pl.col(name).cast(ITEMS_SCHEMA[name]) for name in canonical], *extra)
    return clean, bad, _report(path, raw.height, bad)


def validate_interactions(
    path: Path, item_ids: pl.Series, as_of: int
) -> tuple[pl.DataFrame, pl.DataFrame, TableReport]:
    raw = _read(path, ("user_id", "item_id", "ts"))
    frame = raw.with_row_index(ROW, offset=1)
    work, checks = _screen(frame, INTERACTION_SCALARS, path.suffix != ".parquet" and path.suffix != ".csv")
    ts = _parse_timestamp("ts", work.schema["ts"])
    item_id = _id("item_id")
    checks += _id_checks(("user_id", "item_id"))
    checks += [("bad_timestamp", "ts", ts.is_null()), ("future_timestamp", "ts", ts > as_of)]
    numeric: dict[str, pl.Expr] = {}
    for name in ("weight", "rating"):
        if name in raw.columns:
            numeric[name] = _parse_float(name, work.schema[name])
            checks.append((f"bad_{name}", name, ~_blank(name) & numeric[name].is_null()))
            checks.append((f"bad_{name}", name, numeric[name].is_nan() | numeric[name].is_infinite()))
    checks.append(("unknown_item", "item_id", ~item_id.is_in(item_ids.implode())))
    checks.append(("duplicate", "*", ~pl.struct(raw.columns).is_first_distinct()))
    rating = numeric.get("rating", pl.lit(None, dtype=pl.Float64))
    weight = pl.coalesce(numeric.get("weight", pl.lit(None, dtype=pl.Float64)), rating, pl.lit(1.0))
    event = (
        pl.col("event").cast(pl.String).str.strip_chars().replace("", None).fill_null(DEFAULT_EVENT)
        if "event" in raw.columns
        else pl.lit(DEFAULT_EVENT)
    )
    parsed = [
        _id("user_id").alias("user_id"),
        item_id.alias("item_id"),
        ts.alias("ts"),
        event.alias("event"),
        weight.alias("weight"),
        rating.alias("rating"),
    ]
    clean, bad = _split(frame, work, checks, parsed)
    clean = clean.select([pl.col(name).cast(dtype) for name, dtype in INTERACTIONS_SCHEMA.items()])
    return clean, bad, _report(path, raw.height, bad)


def _threshold_message(report: TableReport, max_bad_share: float) -> str:
    """File, field and example row numbers; never the values (rows may be personal data)."""
    lines = [
        f"{report.path}: {report.bad_rows} of {report.rows} rows are bad "
        f"({report.bad_share:.2%} > {max_bad_share:.2%} allowed)"
    ]
    for entry in report.by_reason:
        examples = entry["examples"]
        assert isinstance(examples, list)
        rows = ", ".join(str(example[ROW]) for example in examples)
        more = ", ..." if int(str(entry["count"])) > len(examples) else ""
        lines.append(
            f"  field '{entry['field']}' ({entry['reason']}, {entry['count']} rows): rows {rows}{more}"
        )
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

    Raises :class:`DataValidationError` (or its subclass ``DataFileError`` for unreadable
    files) when either table has more than ``max_bad_share`` bad rows or no good row at all.
    The quarantine files are written first, so nothing is lost: give a folder that outlives
    the attempt (the pipeline uses ``RunStore.quarantine_dir(run_id)``), since the error
    message sends the reader there. Its path in the message is absolute.
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
            report.quarantine_path = Path(quarantine_dir).absolute() / f"{name}.quarantine.parquet"
            atomic_write_parquet(bad, report.quarantine_path)
    failures = [
        _threshold_message(report, max_bad_share)
        for report in (items_report, events_report)
        if report.bad_share > max_bad_share
    ]
    if failures:
        raise DataValidationError("\n".join(failures))
    for report, clean in ((items_report, items), (events_report, interactions)):
        if clean.height == 0:
            where = f"; all bad rows: {report.quarantine_path}" if report.quarantine_path else ""
            raise DataValidationError(f"{report.path}: no usable rows ({report.bad_rows} bad{where})")
    return Dataset(items, interactions, items_report, events_report)
