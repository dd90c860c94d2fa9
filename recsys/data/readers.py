"""Read ``items.*`` and ``interactions.*`` from a folder in Parquet, CSV or JSONL."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import polars as pl

from recsys.data.errors import DataValidationError

SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson", ".json")
REPLACEMENT = "\ufffd"
"""What undecodable bytes become when a text file is read; validation quarantines rows holding it."""

log = logging.getLogger(__name__)


class DataFileError(DataValidationError):
    """An input file is missing, ambiguous or unreadable; the message names the file."""


def find_table(folder: str | Path, stem: str) -> Path:
    """The single file ``<folder>/<stem>.<parquet|csv|jsonl>``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(f"{folder}: not a directory")
    matches = [folder / f"{stem}{suffix}" for suffix in SUFFIXES if (folder / f"{stem}{suffix}").exists()]
    if not matches:
        raise DataFileError(f"{folder}: no {stem}.parquet, {stem}.csv or {stem}.jsonl")
    if len(matches) > 1:
        names = ", ".join(path.name for path in matches)
        raise DataFileError(f"{folder}: several files for '{stem}' ({names}); keep one")
    return matches[0]


def _first_bad_json_line(data: bytes) -> int | None:
    """1-based number of the first line that is not a JSON object (for the error message)."""
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                return number
        except ValueError:
            return number
    return None


def _read_ndjson(path: Path) -> pl.DataFrame:
    """JSON lines; bytes that are not UTF-8 become U+FFFD so one bad row does not sink the file."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = data.decode("utf-8", errors="replace").encode("utf-8")
    try:
        return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    except Exception as error:
        line = _first_bad_json_line(data)
        where = f"line {line} is not a JSON object" if line is not None else "not JSON lines"
        raise DataFileError(f"{path}: cannot be read: {where}") from error


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a file as it is; CSV values stay strings so that validation sees what was written.

    Undecodable bytes in CSV and JSONL become U+FFFD (the row is quarantined, the rest kept).
    The reader's own message is logged at DEBUG only: it may quote the file's contents.
    """
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        if path.suffix == ".csv":
            return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    except Exception as error:  # polars raises several error types for corrupt input
        log.debug("reading %s failed: %s", path, error)
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise DataFileError(f"{path}: cannot be read as {kind} ({type(error).__name__})") from error
    return _read_ndjson(path)
