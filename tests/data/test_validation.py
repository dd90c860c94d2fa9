from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from recsys.data import DataValidationError, load_dataset
from recsys.data.readers import DataFileError

AS_OF = 1_800_000_000

ITEMS_CSV = """item_id,title,text,genres,created_at
a,Alpha,About alpha,drama|comedy,2020-01-01T00:00:00Z
b,Beta,About beta,drama,1577836800
c,Gamma,,drama,
d,,About delta,,
a,Alpha again,Duplicate id,drama,
e,Epsilon,About epsilon,,not-a-date
"""

EVENTS_CSV = """user_id,item_id,ts,rating
u1,a,1600000000,4.5
u1,b,2020-09-13T12:26:40Z,3
u2,a,1600000100,
,a,1600000200,4
u3,,1600000300,4
u3,a,yesterday,4
u3,a,1900000000,4
u3,zzz,1600000400,4
u3,b,1600000500,five
u1,a,1600000000,4.5
"""


def write(folder: Path, items: str, events: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(items)
    (folder / "interactions.csv").write_text(events)
    return folder


def test_every_bad_row_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    folder = write(tmp_path / "in", ITEMS_CSV, EVENTS_CSV)
    quarantine = tmp_path / "q"
    dataset = load_dataset(folder, max_bad_share=1.0, as_of=AS_OF, quarantine_dir=quarantine)

    bad_items = pl.read_parquet(quarantine / "items.quarantine.parquet")
    assert sorted(zip(bad_items["row"].to_list(), bad_items["reason"].to_list(), strict=True)) == [
        (3, "empty_text"),
        (4, "missing_title"),
        (5, "duplicate"),
        (6, "bad_timestamp"),
    ]
    bad_events = pl.read_parquet(quarantine / "interactions.quarantine.parquet")
    found = {
        row: (reason, field) for row, reason, field in bad_events.select("row", "reason", "field").iter_rows()
    }
    assert found == {
        4: ("missing_id", "user_id"),
        5: ("missing_id", "item_id"),
        6: ("bad_timestamp", "ts"),
        7: ("future_timestamp", "ts"),
        8: ("unknown_item", "item_id"),
        9: ("bad_rating", "rating"),
        10: ("duplicate", "*"),
    }
    # The original text of each bad row is kept, so nothing is lost.
    assert bad_events.filter(pl.col("row") == 6)["ts"].item() == "yesterday"

    assert dataset.items["item_id"].to_list() == ["a", "b"]
    assert dataset.items["categories"].to_list() == [["drama", "comedy"], ["drama"]]
    assert dataset.items["created_at"].to_list() == [1577836800, 1577836800]
    events = dataset.interactions
    assert events.columns == ["user_id", "item_id", "ts", "event", "weight", "rating"]
    assert events["ts"].to_list() == [1600000000, 1600000000, 1600000100]
    assert events["weight"].to_list() == [4.5, 3.0, 1.0]
    assert events["rating"].to_list() == [4.5, 3.0, None]


def test_above_threshold_fails_naming_file_field_and_rows(tmp_path: Path) -> None:
    folder = write(tmp_path / "in", ITEMS_CSV, EVENTS_CSV)
    quarantine = tmp_path / "q"
    with pytest.raises(DataValidationError) as raised:
        load_dataset(folder, max_bad_share=0.01, as_of=AS_OF, quarantine_dir=quarantine)
    message = str(raised.value)
    assert "interactions.csv" in message and "items.csv" in message
    assert "field 'ts'" in message and "'yesterday'" in message and "row 6" in message
    # Quarantine is written before failing, so the bad rows can be inspected.
    assert (quarantine / "interactions.quarantine.parquet").exists()


def test_below_threshold_clean_rows_go_on(
    tmp_path: Path, tiny_demo: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    items, events = tiny_demo
    folder = tmp_path / "in"
    folder.mkdir()
    items.write_parquet(folder / "items.parquet")
    broken = pl.concat([events, events.head(5).with_columns(pl.lit("nope").alias("item_id"))])
    broken.write_parquet(folder / "interactions.parquet")
    dataset = load_dataset(folder, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert dataset.interactions.height == events.height
    assert dataset.interactions_report.bad_rows == 5


def test_jsonl_and_datetime_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "items.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [{"item_id": "a", "title": "A", "text": "t", "tags": ["x", "y"]}])
    )
    pl.DataFrame(
        {"user_id": ["u"], "item_id": ["a"], "ts": [datetime(2021, 1, 1, tzinfo=UTC)]}
    ).write_parquet(folder / "interactions.parquet")
    dataset = load_dataset(folder, as_of=AS_OF)
    assert dataset.items["tags"].to_list() == [["x", "y"]]
    assert dataset.interactions["ts"].to_list() == [1609459200]


def test_missing_column_and_missing_file_are_named(tmp_path: Path) -> None:
    folder = write(tmp_path / "in", "item_id,title\na,A\n", EVENTS_CSV)
    with pytest.raises(DataValidationError, match=r"items.csv: missing required column\(s\) text"):
        load_dataset(folder, as_of=AS_OF)
    (folder / "items.csv").unlink()
    with pytest.raises(DataFileError, match=r"no items\.parquet"):
        load_dataset(folder, as_of=AS_OF)


def test_demo_catalog_validates_clean(tiny_demo_dir: Path) -> None:
    dataset = load_dataset(tiny_demo_dir)
    assert dataset.stats["bad_rows"] == 0
    assert dataset.stats["interactions"] == 6000
