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
a,Alpha,About alpha,comedy,
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
    assert "field 'ts'" in message and "rows 6" in message
    assert "yesterday" not in message and "zzz" not in message  # values stay out of messages and logs
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


# -- malformed tables: a clear error or a quarantined row, never a traceback ----------------------------

ITEMS_OK = "item_id,title,text\na,A,About a\nb,B,About b\n"


def _events_parquet(folder: Path, **columns: list[object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(ITEMS_OK)
    base: dict[str, list[object]] = {"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "a"]}
    base["ts"] = [1_600_000_000, 1_600_000_001, 1_600_000_002]
    pl.DataFrame({**base, **columns}, strict=False).write_parquet(folder / "interactions.parquet")
    return folder


def _quarantined(quarantine: Path, table: str) -> dict[int, tuple[str, str]]:
    bad = pl.read_parquet(quarantine / f"{table}.quarantine.parquet")
    return {row: (reason, field) for row, reason, field in bad.select("row", "reason", "field").iter_rows()}


@pytest.mark.parametrize("table", ["items", "interactions"])
def test_header_only_table_is_a_validation_error(tmp_path: Path, table: str) -> None:
    folder = write(tmp_path / "in", ITEMS_OK, "user_id,item_id,ts\nu1,a,1600000000\n")
    header = (folder / f"{table}.csv").read_text().splitlines()[0]
    (folder / f"{table}.csv").write_text(header + "\n")
    with pytest.raises(DataValidationError, match=rf"{table}\.csv: no rows \(a header only"):
        load_dataset(folder, as_of=AS_OF)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("items.parquet", b"PAR1 not really parquet"),
        ("items.csv", bytes(range(256)) * 4),
        ("items.csv", b""),
        ("items.jsonl", b'{"item_id": "a", "title": "A", "text": "t"}\nnot json\n'),
    ],
)
def test_garbage_file_is_a_validation_error_naming_it(tmp_path: Path, name: str, content: bytes) -> None:
    folder = write(tmp_path / "in", ITEMS_OK, EVENTS_CSV)
    (folder / "items.csv").unlink()
    (folder / name).write_bytes(content)
    with pytest.raises(DataValidationError, match=rf"{name}"):
        load_dataset(folder, as_of=AS_OF)


@pytest.mark.parametrize("bad_ts", [float("nan"), float("inf"), float("-inf"), 1e30, -1e300])
def test_non_finite_or_huge_float_timestamps_are_quarantined(tmp_path: Path, bad_ts: float) -> None:
    folder = _events_parquet(tmp_path / "in", ts=[1.6e9, bad_ts, 1.6e9 + 2])
    dataset = load_dataset(folder, max_bad_share=0.5, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "interactions") == {2: ("bad_timestamp", "ts")}
    assert dataset.interactions["ts"].to_list() == [1_600_000_000, 1_600_000_002]


def test_huge_integer_timestamps_are_quarantined(tmp_path: Path) -> None:
    """Outside what a datetime holds (years 1-9999) is unparsable; inside it, later than as_of is future."""
    folder = _events_parquet(tmp_path / "in", ts=[-(2**62), 2**62, 253_402_300_799])
    with pytest.raises(DataValidationError, match="no usable rows"):
        load_dataset(folder, max_bad_share=1.0, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "interactions") == {
        1: ("bad_timestamp", "ts"),
        2: ("bad_timestamp", "ts"),
        3: ("future_timestamp", "ts"),
    }


def test_list_typed_ids_are_wrong_type(tmp_path: Path) -> None:
    parquet = _events_parquet(tmp_path / "parquet", user_id=[["u1"], ["u2"], ["u3"]])
    with pytest.raises(DataValidationError, match=r"field 'user_id' \(wrong_type, 3 rows\): rows 1, 2, 3"):
        load_dataset(parquet, as_of=AS_OF)
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    (jsonl / "items.csv").write_text(ITEMS_OK)
    lines = [
        {"user_id": "u1", "item_id": "a", "ts": 1_600_000_000},
        {"user_id": ["u2"], "item_id": "b", "ts": 1_600_000_001},
        {"user_id": "u3", "item_id": {"id": "a"}, "ts": 1_600_000_002},
    ]
    (jsonl / "interactions.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    dataset = load_dataset(jsonl, max_bad_share=1.0, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "interactions") == {
        2: ("wrong_type", "user_id"),
        3: ("wrong_type", "item_id"),
    }
    assert dataset.interactions["user_id"].to_list() == ["u1"]


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_non_utf8_row_is_quarantined_and_the_rest_kept(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "items.csv").write_text(ITEMS_OK)
    users = [b"u1", b"u\xff\xfe2", b"u3"]
    path = folder / f"interactions.{suffix}"
    if suffix == "csv":
        path.write_bytes(b"user_id,item_id,ts\n" + b"".join(u + b",a,1600000000\n" for u in users))
    elif suffix == "jsonl":
        path.write_bytes(
            b"".join(b'{"user_id": "' + u + b'", "item_id": "a", "ts": 1600000000}\n' for u in users)
        )
    else:
        pl.DataFrame({"user_id": users, "item_id": ["a"] * 3, "ts": [1_600_000_000] * 3}).write_parquet(path)
    dataset = load_dataset(folder, max_bad_share=0.5, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "interactions") == {2: ("bad_encoding", "user_id")}
    assert dataset.interactions["user_id"].to_list() == ["u1", "u3"]


def test_ids_with_control_characters_are_quarantined(tmp_path: Path) -> None:
    folder = _events_parquet(tmp_path / "in", user_id=["u1", "u\x002", "u3\x1b[2J"])
    dataset = load_dataset(folder, max_bad_share=1.0, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "interactions") == {
        2: ("bad_id", "user_id"),
        3: ("bad_id", "user_id"),
    }
    assert dataset.interactions["user_id"].to_list() == ["u1"]


def test_same_item_id_with_different_text_is_quarantined_in_every_row(tmp_path: Path) -> None:
    items = ITEMS_OK + "a,A,About a\nb,B,Something else entirely\nc,C,About c\n"
    folder = write(tmp_path / "in", items, "user_id,item_id,ts\nu1,a,1600000000\nu1,c,1600000000\n")
    dataset = load_dataset(folder, max_bad_share=1.0, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "items") == {
        2: ("conflicting_duplicate", "item_id"),
        4: ("conflicting_duplicate", "item_id"),
        3: ("duplicate", "item_id"),  # same text again: the first row is kept
    }
    assert dataset.items["item_id"].to_list() == ["a", "c"]


def test_duplicate_after_a_bad_first_row_keeps_the_good_one(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "in", "item_id,title,text\na,A,\na,A,About a\n", "user_id,item_id,ts\nu,a,1600000000\n"
    )
    dataset = load_dataset(folder, max_bad_share=1.0, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "items") == {1: ("empty_text", "text")}
    assert dataset.items["text"].to_list() == ["About a"]


def test_no_usable_rows_is_a_validation_error(tmp_path: Path) -> None:
    folder = write(tmp_path / "in", ITEMS_OK, "user_id,item_id,ts\nu,zzz,1600000000\n")
    with pytest.raises(DataValidationError, match=r"interactions\.csv: no usable rows \(1 bad"):
        load_dataset(folder, max_bad_share=1.0, as_of=AS_OF)


def test_quarantine_outlives_a_failed_validation_and_the_message_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's folder (``<runs>/quarantine/<run_id>``) is what the message names, as an absolute path."""
    folder = write(tmp_path / "in", ITEMS_CSV, EVENTS_CSV)
    monkeypatch.chdir(tmp_path)
    quarantine = Path("runs") / "quarantine" / "run-1"
    with pytest.raises(DataValidationError) as raised:
        load_dataset(folder, as_of=AS_OF, quarantine_dir=quarantine)
    named = [
        line.split("all bad rows: ")[1] for line in str(raised.value).splitlines() if "all bad rows" in line
    ]
    assert named == [
        str(tmp_path / quarantine / f"{t}.quarantine.parquet") for t in ("items", "interactions")
    ]
    for path in named:
        assert pl.read_parquet(path).height > 0


def test_metadata_of_odd_types_is_kept_or_quarantined(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pl.DataFrame(
        {
            "item_id": ["a", "b"],
            "title": ["A", "B"],
            "text": ["About a", "About b"],
            "genres": [[1, 2], [3, 4]],
            "tags": [{"k": 1}, None],
        },
        schema_overrides={"genres": pl.Array(pl.Int64, 2)},
    ).write_parquet(folder / "items.parquet")
    (folder / "interactions.csv").write_text("user_id,item_id,ts\nu,a,1600000000\nu,b,1600000000\n")
    dataset = load_dataset(folder, max_bad_share=1.0, as_of=AS_OF, quarantine_dir=tmp_path / "q")
    assert _quarantined(tmp_path / "q", "items") == {1: ("wrong_type", "tags")}  # an object is no tag list
    assert dataset.items["categories"].to_list() == [["3", "4"]]
