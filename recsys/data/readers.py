"""Read ``items.*`` and ``interactions.*`` from a folder in Parquet, CSV or JSONL."""

from __future__ import annotations

from pathlib import Path

import polars as pl

SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson", ".json")


class DataFileError(ValueError):
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


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a file as it is; CSV values stay strings so that validation sees what was written."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        if path.suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception as error:  # polars raises several error types for corrupt input
        raise DataFileError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
