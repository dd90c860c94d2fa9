"""The SQLite online store: one file in WAL mode, records and the event log in one database.

Writers serialize with ``BEGIN IMMEDIATE`` (SQLite's own write lock, held across processes);
every read inside :meth:`SQLiteOnlineStore.exclusive` runs in that transaction, so an event
batch reads and writes one consistent state and a push replays the log it replaces under.
Deleted rows are overwritten (``secure_delete``) and forgetting a user rewrites the file (``VACUUM``)
and empties the WAL, so a forgotten user leaves no bytes behind.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feature_store.online_store import (
    FORMAT,
    Exposure,
    LoggedEvent,
    OnlineStore,
    OnlineStoreBusy,
    OnlineStoreError,
    Outcome,
    Row,
    chunks,
    user_key_prefix,
)
from recsys.config import FeaturesConfig

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another one before giving up (:class:`OnlineStoreBusy`)."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    view TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at INTEGER NOT NULL,
    PRIMARY KEY (view, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_updated ON records (view, updated_at);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE, user_id TEXT NOT NULL,
    item_id TEXT NOT NULL, ts INTEGER NOT NULL, event TEXT NOT NULL, weight REAL NOT NULL,
    rating REAL, category TEXT
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id);
CREATE TABLE IF NOT EXISTS exposures (
    recommendation_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL,
    run_id TEXT NOT NULL, user_id TEXT NOT NULL, ts INTEGER NOT NULL, items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exposures_user ON exposures (experiment, user_id, ts);
CREATE INDEX IF NOT EXISTS exposures_ts ON exposures (ts);
CREATE INDEX IF NOT EXISTS exposures_of_user ON exposures (user_id);
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, recommendation_id TEXT NOT NULL, experiment TEXT NOT NULL,
    arm TEXT NOT NULL, user_id TEXT NOT NULL, item_id TEXT NOT NULL, event TEXT NOT NULL,
    ts INTEGER NOT NULL, shown INTEGER NOT NULL, via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_experiment ON outcomes (experiment);
CREATE INDEX IF NOT EXISTS outcomes_user ON outcomes (user_id);
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts);
"""
EVENT_COLUMNS = "event_id, user_id, item_id, ts, event, weight, rating, category"
EXPOSURE_COLUMNS = "recommendation_id, experiment, arm, run_id, user_id, ts, items"
OUTCOME_COLUMNS = "recommendation_id, experiment, arm, user_id, item_id, event, ts, shown, via"


def _exposure(row: tuple[Any, ...]) -> Exposure:
    rid, experiment, arm, run_id, user_id, ts, items = row
    return Exposure(rid, experiment, arm, run_id, user_id, ts, tuple(json.loads(items)))


def _outcome(row: tuple[Any, ...]) -> Outcome:
    rid, experiment, arm, user_id, item_id, event, ts, shown, via = row
    return Outcome(rid, experiment, arm, user_id, item_id, event, ts, bool(shown), via)


class SQLiteOnlineStore(OnlineStore):
    """One SQLite file in WAL mode: readers never block the writer and see whole batches only."""

    def __init__(self, config: FeaturesConfig, path: str | Path) -> None:
        super().__init__(config)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.executescript(SCHEMA)
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            stored = self._conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()[0]
        except sqlite3.DatabaseError as error:
            self._conn.close()
            raise OnlineStoreError(f"{self.path}: unreadable or corrupt online store ({error})") from None
        if stored != FORMAT:
            self._conn.close()
            raise OnlineStoreError(f"{self.path}: online store format {stored!r}, expected {FORMAT!r}")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise OnlineStoreBusy(f"{self.path}: online store busy ({error})") from None
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def _write(self, rows: list[Row], meta: dict[str, str], events: list[LoggedEvent]) -> None:
        with self.exclusive():
            self._conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", rows)
            self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
            self._conn.executemany(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.event_id, e.user_id, e.item_id, e.ts, e.event, e.weight, e.rating, e.category)
                    for e in events
                ],
            )

    def replace_all(self, rows: list[Row], meta: Mapping[str, str]) -> None:
        with self.exclusive():
            self._conn.execute("DELETE FROM records")
            self._conn.execute("DELETE FROM meta WHERE name != 'format'")
            self._write(rows, dict(meta), [])

    def _read(self, view: str, keys: list[str]) -> list[str | None]:
        found: dict[str, str] = {}
        with self._lock:
            for chunk in chunks(keys, 900):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, value FROM records WHERE view = ? AND key IN ({marks})"
                found.update(self._conn.execute(query, (view, *chunk)).fetchall())
        return [found.get(key) for key in keys]

    def _read_meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT name, value FROM meta").fetchall())

    def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        with self._lock:
            for chunk in chunks(event_ids, 900):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT event_id FROM events WHERE event_id IN ({marks})"
                known.update(row[0] for row in self._conn.execute(query, tuple(chunk)))
        return known

    def logged_events(self, since: int | None = None, user_id: str | None = None) -> list[LoggedEvent]:
        query = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE ts >= ? AND (? IS NULL OR user_id = ?) ORDER BY seq"
        )
        with self._lock:
            rows = self._conn.execute(query, (since if since is not None else -(2**62), user_id, user_id))
            return [LoggedEvent(*row) for row in rows.fetchall()]

    def _expire(self, cutoffs: dict[str, int], log_cutoff: int) -> int:
        removed = 0
        with self.exclusive():
            for view, cutoff in cutoffs.items():
                removed += self._conn.execute(
                    "DELETE FROM records WHERE view = ? AND updated_at < ?", (view, cutoff)
                ).rowcount
            for table in ("events", "exposures", "outcomes"):
                removed += self._conn.execute(f"DELETE FROM {table} WHERE ts < ?", (log_cutoff,)).rowcount
        return removed

    def forget(self, user_id: str) -> int:
        prefix = user_key_prefix(user_id)
        removed = 0
        with self._lock:
            with self.exclusive():
                for view in self.user_views:
                    removed += self._conn.execute(
                        "DELETE FROM records WHERE view = ? AND (key = ? OR substr(key, 1, ?) = ?)",
                        (view, user_id, len(prefix), prefix),
                    ).rowcount
                for table in ("events", "exposures", "outcomes"):
                    query = f"DELETE FROM {table} WHERE user_id = ?"
                    removed += self._conn.execute(query, (user_id,)).rowcount
            if not self._depth:  # page rebalancing can leave copies of deleted cells: rewrite the file
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def held_about(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        prefix = user_key_prefix(user_id)
        held: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for view in self.user_views:
                rows = self._conn.execute(
                    "SELECT value FROM records WHERE view = ? AND (key = ? OR substr(key, 1, ?) = ?) "
                    "ORDER BY key",
                    (view, user_id, len(prefix), prefix),
                ).fetchall()
                if rows:
                    held[view] = [json.loads(value) for (value,) in rows]
        return held

    # -- the exposure log ---------------------------------------------------------------------------
    def log_exposures(self, exposures: Sequence[Exposure]) -> None:
        rows = [
            (e.recommendation_id, e.experiment, e.arm, e.run_id, e.user_id, e.ts, json.dumps(list(e.items)))
            for e in exposures
        ]
        with self.exclusive():
            self._conn.executemany(
                f"INSERT OR IGNORE INTO exposures ({EXPOSURE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )

    def log_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        rows = [
            (o.recommendation_id, o.experiment, o.arm, o.user_id, o.item_id, o.event, o.ts, o.shown, o.via)
            for o in outcomes
        ]
        with self.exclusive():
            self._conn.executemany(
                f"INSERT INTO outcomes ({OUTCOME_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def exposures(self, experiment: str) -> list[Exposure]:
        query = f"SELECT {EXPOSURE_COLUMNS} FROM exposures WHERE experiment = ? ORDER BY rowid"
        with self._lock:
            return [_exposure(row) for row in self._conn.execute(query, (experiment,)).fetchall()]

    def exposures_by_id(self, recommendation_ids: Sequence[str]) -> dict[str, Exposure]:
        found: dict[str, Exposure] = {}
        with self._lock:
            for chunk in chunks(recommendation_ids, 900):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT {EXPOSURE_COLUMNS} FROM exposures WHERE recommendation_id IN ({marks})"
                for row in self._conn.execute(query, tuple(chunk)).fetchall():
                    found[row[0]] = _exposure(row)
        return found

    def latest_exposure(self, experiment: str, user_id: str) -> Exposure | None:
        query = (
            f"SELECT {EXPOSURE_COLUMNS} FROM exposures WHERE experiment = ? AND user_id = ? "
            "ORDER BY ts DESC, rowid DESC LIMIT 1"
        )
        with self._lock:
            row = self._conn.execute(query, (experiment, user_id)).fetchone()
        return None if row is None else _exposure(row)

    def outcomes(self, experiment: str) -> list[Outcome]:
        query = f"SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE experiment = ? ORDER BY seq"
        with self._lock:
            return [_outcome(row) for row in self._conn.execute(query, (experiment,)).fetchall()]

    def user_exposures(self, user_id: str) -> list[Exposure]:
        query = f"SELECT {EXPOSURE_COLUMNS} FROM exposures WHERE user_id = ? ORDER BY rowid"
        with self._lock:
            return [_exposure(row) for row in self._conn.execute(query, (user_id,)).fetchall()]

    def user_outcomes(self, user_id: str) -> list[Outcome]:
        query = f"SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE user_id = ? ORDER BY seq"
        with self._lock:
            return [_outcome(row) for row in self._conn.execute(query, (user_id,)).fetchall()]

    def close(self) -> None:
        # Under the lock: a thread left running past its request's deadline may still be reading, and
        # closing a connection another thread is using crashes the sqlite3 module.
        with self._lock:
            self._conn.close()
