"""Forgetting a user: tombstones every later run applies, the online store, and retained runs.

A tombstone is a keyed hash of the user id (HMAC-SHA256 with a salt kept beside it in
``<runs>/tombstones.json``), so the file that makes sure a user never returns does not itself
name them. :func:`drop_forgotten` removes tombstoned users from any frame with a ``user_id``
column; the pipeline applies it when it loads data (files and the online store's event log).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from filelock import FileLock

from recsys.artifacts import RunStore, atomic_write_json, atomic_write_parquet
from recsys.config import Config, FeaturesConfig, config_of_run

TOMBSTONES = "tombstones.json"
FORMAT = "recsys-tombstones/1"
USER_ID = "user_id"


class PrivacyError(RuntimeError):
    """The tombstone file cannot be read; the message names it."""


@dataclass(frozen=True)
class Tombstones:
    """The forgotten users of a runs folder, as keyed hashes."""

    salt: str
    hashes: frozenset[str]

    def digest(self, user_id: str) -> str:
        return hmac.new(bytes.fromhex(self.salt), user_id.encode(), hashlib.sha256).hexdigest()

    def forgotten(self, user_id: str) -> bool:
        return self.digest(user_id) in self.hashes


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PrivacyError(f"{path}: unreadable tombstone file ({error})") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("forgotten"), list)
    ):
        raise PrivacyError(f"{path}: not a tombstone file of format {FORMAT}")
    return data


def read_tombstones(runs_dir: str | Path) -> Tombstones:
    """The runs folder's tombstones (none yet: an empty set)."""
    path = Path(runs_dir) / TOMBSTONES
    if not path.exists():
        return Tombstones(salt="", hashes=frozenset())
    data = _read(path)
    return Tombstones(salt=data["salt"], hashes=frozenset(entry["hash"] for entry in data["forgotten"]))


def add_tombstones(runs_dir: str | Path, user_ids: Iterable[str]) -> int:
    """Record ``user_ids`` as forgotten (idempotent); returns how many were new."""
    path = Path(runs_dir) / TOMBSTONES
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        data: dict[str, Any] = (
            _read(path)
            if path.exists()
            else {"format": FORMAT, "salt": secrets.token_hex(16), "forgotten": []}
        )
        stones = Tombstones(data["salt"], frozenset(entry["hash"] for entry in data["forgotten"]))
        new = sorted({stones.digest(user) for user in user_ids} - stones.hashes)
        if new:
            now = int(time.time())
            data["forgotten"].extend({"hash": digest, "at": now} for digest in new)
            atomic_write_json(path, data)
    return len(new)


def drop_forgotten(frame: pl.DataFrame, runs_dir: str | Path) -> pl.DataFrame:
    """``frame`` without the rows of forgotten users (its ``user_id`` column is matched)."""
    stones = read_tombstones(runs_dir)
    if not stones.hashes or USER_ID not in frame.columns or frame.is_empty():
        return frame
    users = frame[USER_ID].drop_nulls().unique().cast(pl.String).to_list()
    gone = [user for user in users if stones.forgotten(user)]
    return frame.filter(~pl.col(USER_ID).is_in(gone)) if gone else frame


def scrub_run(run_dir: Path, user_ids: Sequence[str]) -> list[Path]:
    """Rewrite every Parquet file of the run that holds rows of ``user_ids`` (batch recommendations,
    features, data, splits) without them; returns the files rewritten."""
    rewritten = []
    for path in sorted(run_dir.rglob("*.parquet")):
        if USER_ID not in pl.read_parquet_schema(path):
            continue
        frame = pl.read_parquet(path)
        kept = frame.filter(~pl.col(USER_ID).cast(pl.String).is_in(list(user_ids)))
        if kept.height != frame.height:
            atomic_write_parquet(kept, path)
            rewritten.append(path)
    return rewritten


def _store_config(config: Config, runs: RunStore) -> FeaturesConfig:
    """The promoted run's feature definitions with this deployment's online store (as serving uses)."""
    current = runs.current()
    if current is None:
        return config.features
    run_config = config_of_run(runs.manifest(current)["config"])
    return run_config.features.model_copy(update={"online": config.features.online})


@dataclass
class Forgotten:
    """What forgetting removed: store records and log entries, run files rewritten, new tombstones."""

    tombstones: int = 0
    store_entries: int = 0
    files: list[Path] = field(default_factory=list)


def forget_users(config: Config, runs_dir: str | Path, user_ids: Sequence[str]) -> Forgotten:
    """Forget ``user_ids`` everywhere: tombstones first (so a run loading data now drops them), then
    the online store (state, history, batch recommendations, event log), then the files of every
    retained run."""
    from feature_store.online import open_online_store

    runs = RunStore(runs_dir)
    done = Forgotten(tombstones=add_tombstones(runs.root, user_ids))
    with open_online_store(_store_config(config, runs), runs.root) as store:
        done.store_entries = sum(store.forget(user) for user in user_ids)
    for manifest in runs.list_runs():
        done.files.extend(scrub_run(runs.run_dir(manifest["run_id"]), user_ids))
    return done


def export_user(config: Config, runs_dir: str | Path, user_id: str) -> dict[str, Any]:
    """What is held about ``user_id``: the promoted run's history and batch recommendations of the
    user, and the online store's state, logged events, experiment exposures and attributed events."""
    from feature_store.online import open_online_store, user_data

    runs = RunStore(runs_dir)
    held: dict[str, Any] = {"user_id": user_id, "forgotten": read_tombstones(runs.root).forgotten(user_id)}
    current = runs.current()
    if current is not None:
        run_dir = runs.run_dir(current)
        held["run_id"] = current
        for name, path in (
            ("history", run_dir / "data" / "interactions.parquet"),
            ("recommendations", run_dir / "recommendations" / "recommendations.parquet"),
        ):
            if path.exists():
                rows = pl.scan_parquet(path).filter(pl.col(USER_ID) == user_id).collect()
                held[name] = rows.drop(USER_ID).to_dicts()
    with open_online_store(_store_config(config, runs), runs.root) as store:
        held["online_store"] = user_data(store, user_id)
    return held
