"""Fuzzing the validator: a malformed table gives a dataset or a DataValidationError, nothing else.

Derandomized and bounded, so it is deterministic and takes a few seconds.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.data import DataValidationError, load_dataset
from recsys.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA
from recsys.data.validation import MAX_TS, MIN_TS

AS_OF = 1_800_000_000
SECRET = "PII-SECRET"
"""A value standing for personal data: it must never appear in an error message."""
BAD_BYTES = "ZZBADZZ"
"""Replaced by bytes that are not UTF-8 once the file is written."""

WEIRD_TEXT = st.sampled_from(
    ["", "  ", "a\x00b", "x\x1b[2J", "\u2028", "NaN", "inf", "[1]", '{"a": 1}', "1e400", "2020-13-45"]
)
NASTY_TEXT = st.sampled_from(
    ["9" * 30, "\ufffd", SECRET, f"{SECRET}{BAD_BYTES}", "a,b", 'q"uote', "line\nbreak"]
)
IDS = st.one_of(st.sampled_from(["a", "b", "c"]), WEIRD_TEXT, NASTY_TEXT)
JSON_VALUES = st.one_of(
    IDS,
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(["a", SECRET]), max_size=2),
    st.dictionaries(st.sampled_from(["k"]), st.integers(), max_size=1),
)
TIMESTAMPS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.sampled_from(["2020-01-01T00:00:00Z", "1600000000", "yesterday", "", "nan", "-inf", "1e30"]),
    st.none(),
)


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Good four times in five: tables are mostly fine with a few malformed cells, as in real logs."""
    return st.integers(0, 4).flatmap(lambda pick: bad if pick == 0 else good)


ITEM_IDS = st.sampled_from(["a", "b", "c", "d"])


def _item(item_id: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "item_id": _mostly(st.just(item_id), JSON_VALUES),
            "title": _mostly(st.just(item_id.upper()), JSON_VALUES),
            "text": _mostly(st.just(f"about {item_id}"), st.one_of(st.just("other text"), JSON_VALUES)),
            "genres": _mostly(st.sampled_from(["x|y", ""]), JSON_VALUES),
        }
    )


ITEM_ROWS = st.lists(ITEM_IDS, min_size=1, max_size=6).flatmap(
    lambda ids: st.tuples(*[_item(item_id) for item_id in ids]).map(list)
)
EVENT_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": _mostly(st.sampled_from(["u1", "u2", SECRET]), JSON_VALUES),
            "item_id": _mostly(ITEM_IDS, JSON_VALUES),
            "ts": _mostly(st.integers(1_500_000_000, 1_700_000_000), st.one_of(TIMESTAMPS, JSON_VALUES)),
            "rating": _mostly(st.floats(0, 5), JSON_VALUES),
        }
    ),
    min_size=1,
    max_size=8,
)


PARQUET_KINDS = ["text", "binary", "list", "float", "int"]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _encode(rows: list[dict[str, Any]], columns: list[str], fmt: str) -> bytes:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([[_csv_cell(row[name]) for name in columns] for row in rows])
        data = buffer.getvalue().encode()
    else:
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    return data.replace(BAD_BYTES.encode(), b"\xffZ\xfe")


def _parquet(rows: list[dict[str, Any]], columns: list[str], kinds: dict[str, str]) -> bytes:
    """One dtype per column (Parquet has no mixed columns): values converted to the drawn kind."""
    convert = {
        "text": lambda v: None if v is None else _csv_cell(v),
        "binary": lambda v: None if v is None else _csv_cell(v).encode().replace(BAD_BYTES.encode(), b"\xff"),
        "list": lambda v: None if v is None else [_csv_cell(v)],
        "float": lambda v: v if isinstance(v, float) else None,
        "int": lambda v: v if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63 else None,
    }
    frame = pl.DataFrame(
        {name: [convert[kinds[name]](row[name]) for row in rows] for name in columns},
        schema={
            name: {
                "text": pl.String,
                "binary": pl.Binary,
                "list": pl.List(pl.String),
                "float": pl.Float64,
                "int": pl.Int64,
            }[kinds[name]]
            for name in columns
        },
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


@st.composite
def tables(draw: st.DrawFn) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for stem, rows_strategy, columns in (
        ("items", ITEM_ROWS, ["item_id", "title", "text", "genres"]),
        ("interactions", EVENT_ROWS, ["user_id", "item_id", "ts", "rating"]),
    ):
        fmt = draw(st.sampled_from(["csv", "jsonl", "parquet"] * 3 + ["garbage"]))
        rows = draw(rows_strategy) if draw(st.integers(0, 9)) else []  # sometimes a header only
        if fmt == "garbage":
            files[f"{stem}.{draw(st.sampled_from(['csv', 'jsonl', 'parquet']))}"] = draw(
                st.binary(max_size=64)
            )
        elif fmt == "parquet":
            kinds = {
                name: draw(st.sampled_from(["text", "binary", "list", "float", "int"])) for name in columns
            }
            files[f"{stem}.parquet"] = _parquet(rows, columns, kinds)
        else:
            files[f"{stem}.{fmt}"] = _encode(rows, columns, fmt)
    return files


def _check_clean(items: pl.DataFrame, events: pl.DataFrame) -> None:
    assert items.schema == {**ITEMS_SCHEMA, **{name: items.schema[name] for name in items.columns[6:]}}
    assert events.schema == INTERACTIONS_SCHEMA
    assert items["item_id"].is_unique().all()
    for ids in (items["item_id"], events["user_id"], events["item_id"]):
        assert not ids.str.contains(r"\p{Cc}|\x{FFFD}").any()
        assert (ids.str.strip_chars() != "").all()
    assert events["ts"].is_between(MIN_TS, min(MAX_TS, AS_OF)).all()
    assert events["item_id"].is_in(items["item_id"].implode()).all()


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(files=tables(), max_bad_share=st.sampled_from([0.0, 0.5, 1.0]))
def test_malformed_tables_never_raise_anything_but_validation_errors(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], max_bad_share: float
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    for name, content in files.items():
        (folder / name).write_bytes(content)
    try:
        dataset = load_dataset(folder, max_bad_share=max_bad_share, as_of=AS_OF, quarantine_dir=folder / "q")
    except DataValidationError as error:
        message = str(error)
        assert str(folder) in message  # names the file
        assert SECRET not in message  # never the values
        return
    _check_clean(dataset.items, dataset.interactions)
    for table in ("items", "interactions"):
        quarantined = pl.read_parquet(folder / "q" / f"{table}.quarantine.parquet")
        assert quarantined.columns[:3] == ["row", "reason", "field"]
