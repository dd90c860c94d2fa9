"""The online store: the state of every view per entity key, served at request time.

One :class:`OnlineStore` interface (write a batch, read many, expire, close), two
backends: :class:`SQLiteOnlineStore` (default; one file, WAL mode) and
:class:`RedisOnlineStore`. The store holds *state*, not finished values: the same
:func:`feature_store.offline.assemble` that builds training frames turns it into features
at the request's ``now``, so online values equal offline ones for the same moment.

Freshness: :func:`push_materialized` replaces everything (nightly). :func:`apply_events`
then updates, per live event, the user's history and the ``user``, ``user_item`` and
``user_category`` state. Item state (``item``, ``item_meta``) and the co-visitation table
move only with the next push, and an event leaves a user's time-window counts only then.

Every batch is atomic: records are validated and serialized before anything is written,
and written in one SQLite transaction or one Redis MULTI/EXEC (a push writes a new Redis
generation and switches to it in one MULTI), so a failing batch changes nothing. One
writer at a time is assumed (the nightly job or the event consumer).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import polars as pl

from feature_store.covisit import SEQUENCE_ORDER
from feature_store.definitions import CATEGORY, DAY, ITEM_ID, TS, USER_ID, FeatureDefinitionError, FeatureSet
from feature_store.offline import (
    COVISIT_SCHEMA,
    COVISIT_TABLE,
    HISTORY,
    HISTORY_SCHEMA,
    FeatureInputError,
    _events,
    assemble,
    check_frames,
    state_schema,
)
from feature_store.repository import build_registry, default_feature_set
from recsys.config import FeaturesConfig

KEY_SEPARATOR = "\x1f"
FORMAT = "recsys-online-store/1"
RECOMMENDATIONS = "recommendations"
STORED_TABLES = {HISTORY: (USER_ID,), COVISIT_TABLE: (ITEM_ID,), RECOMMENDATIONS: (USER_ID,)}
"""Stored besides the views: each user's recent history, each item's co-visitation row and the
promoted run's batch recommendations per user (for consumers that read the store directly)."""


class OnlineStoreError(RuntimeError):
    """The store cannot be opened, is corrupt, or holds state of other feature definitions."""


@dataclass(frozen=True)
class Record:
    """The state of one entity in one view (or stored table) as of ``updated_at``."""

    view: str
    key: tuple[str, ...]
    values: Mapping[str, Any]
    updated_at: int


Row = tuple[str, str, str, int]
"""A serialized record: view, encoded key, JSON value, updated_at."""


class OnlineStore(ABC):
    """State per (view, entity key); subclasses implement the storage, this class the contract."""

    def __init__(self, config: FeaturesConfig) -> None:
        self.config = config
        self.registry = build_registry(config)
        self.keys: dict[str, tuple[str, ...]] = {
            name: view.entity.keys for name, view in self.registry.views.items() if view.source != "covisit"
        }
        self.keys.update(STORED_TABLES)
        self.schemas: dict[str, dict[str, pl.DataType]] = {
            name: state_schema(view, config)
            for name, view in self.registry.views.items()
            if view.source != "covisit"
        }
        self.schemas[HISTORY] = {ITEM_ID: pl.List(pl.String()), TS: pl.List(pl.Int64())}
        self.schemas[COVISIT_TABLE] = {"other_item_id": pl.List(pl.String()), "weight": pl.List(pl.Float64())}
        self.schemas[RECOMMENDATIONS] = {ITEM_ID: pl.List(pl.String()), "score": pl.List(pl.Float64())}
        self.definitions_version = default_feature_set(config).version

    # -- the contract ----------------------------------------------------------------
    def write_batch(self, records: Iterable[Record], meta: Mapping[str, str] | None = None) -> int:
        """Write all records (and meta entries) or none; returns how many were written."""
        rows = [self._serialize(record) for record in records]
        self._write(rows, replace=False, meta=dict(meta or {}))
        return len(rows)

    def read_many(self, view: str, keys: Sequence[tuple[str, ...]]) -> list[dict[str, Any] | None]:
        """The state for each key (None where there is none), in the order of ``keys``."""
        encoded = [self._encode_key(view, key) for key in keys]
        if not encoded:
            return []
        return [None if raw is None else json.loads(raw) for raw in self._read(view, encoded)]

    def read_meta(self) -> dict[str, str]:
        return self._read_meta()

    def expire(self, now: int) -> int:
        """Drop state not refreshed (by a push or an event) within its view's ttl before ``now``."""
        default_ttl = self.config.online.ttl_days
        cutoffs = {}
        for view in self.keys:
            ttl = self.registry.views[view].ttl_days if view in self.registry.views else None
            cutoffs[view] = now - int((ttl or default_ttl) * DAY)
        return self._expire(cutoffs)

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- storage, per backend --------------------------------------------------------
    @abstractmethod
    def _write(self, rows: list[Row], replace: bool, meta: dict[str, str]) -> None:
        """Atomically write ``rows``; ``replace`` first drops everything (a push)."""

    @abstractmethod
    def _read(self, view: str, keys: list[str]) -> list[str | None]: ...

    @abstractmethod
    def _read_meta(self) -> dict[str, str]: ...

    @abstractmethod
    def _expire(self, cutoffs: dict[str, int]) -> int: ...

    # -- validation ------------------------------------------------------------------
    def _encode_key(self, view: str, key: tuple[str, ...]) -> str:
        if view not in self.keys:
            raise FeatureDefinitionError(f"unknown view {view!r}; the store holds: {', '.join(self.keys)}")
        expected = self.keys[view]
        if not isinstance(key, tuple) or len(key) != len(expected):
            raise FeatureDefinitionError(f"view {view!r}: key {key!r} does not match entity keys {expected}")
        for name, part in zip(expected, key, strict=True):
            if not isinstance(part, str) or not part or KEY_SEPARATOR in part:
                raise FeatureDefinitionError(f"view {view!r}: bad {name} {part!r} in key {key!r}")
        return KEY_SEPARATOR.join(key)

    def _serialize(self, record: Record) -> Row:
        key = self._encode_key(record.view, record.key)
        expected = set(self.schemas[record.view]) - set(self.keys[record.view])
        given = set(record.values) - set(self.keys[record.view])
        if given != expected:
            raise FeatureInputError(
                f"view {record.view!r} key {record.key!r}: unknown columns {sorted(given - expected)}, "
                f"missing columns {sorted(expected - given)}"
            )
        try:
            value = json.dumps(dict(record.values), allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise FeatureInputError(
                f"view {record.view!r} key {record.key!r}: value not storable ({error})"
            ) from None
        if not isinstance(record.updated_at, int):
            raise FeatureInputError(
                f"view {record.view!r} key {record.key!r}: updated_at must be int seconds"
            )
        return record.view, key, value, record.updated_at


class SQLiteOnlineStore(OnlineStore):
    """One SQLite file in WAL mode: readers never block the writer and see whole batches only."""

    def __init__(self, config: FeaturesConfig, path: str | Path) -> None:
        super().__init__(config)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS records (
                    view TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at INTEGER NOT NULL,
                    PRIMARY KEY (view, key)
                ) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS records_updated ON records (view, updated_at);
                CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
                """
            )
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            stored = self._conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()[0]
        except sqlite3.DatabaseError as error:
            self._conn.close()
            raise OnlineStoreError(f"{self.path}: unreadable or corrupt online store ({error})") from None
        if stored != FORMAT:
            self._conn.close()
            raise OnlineStoreError(f"{self.path}: online store format {stored!r}, expected {FORMAT!r}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _write(self, rows: list[Row], replace: bool, meta: dict[str, str]) -> None:
        with self._transaction() as conn:
            if replace:
                conn.execute("DELETE FROM records")
                conn.execute("DELETE FROM meta WHERE name != 'format'")
            conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", rows)
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))

    def _read(self, view: str, keys: list[str]) -> list[str | None]:
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 900):
                chunk = keys[start : start + 900]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, value FROM records WHERE view = ? AND key IN ({marks})"
                found.update(self._conn.execute(query, (view, *chunk)).fetchall())
        return [found.get(key) for key in keys]

    def _read_meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT name, value FROM meta").fetchall())

    def _expire(self, cutoffs: dict[str, int]) -> int:
        removed = 0
        with self._transaction() as conn:
            for view, cutoff in cutoffs.items():
                removed += conn.execute(
                    "DELETE FROM records WHERE view = ? AND updated_at < ?", (view, cutoff)
                ).rowcount
        return removed

    def close(self) -> None:
        self._conn.close()


class RedisOnlineStore(OnlineStore):
    """Redis strings under ``<prefix>:<generation>:<view>:<key>``; a push fills a new generation and
    switches ``<prefix>:generation`` to it in one MULTI, so readers see the old or the new state whole."""

    CHUNK = 10_000

    def __init__(self, config: FeaturesConfig, url: str, prefix: str) -> None:
        super().__init__(config)
        import redis

        self.url, self.prefix = url, prefix
        self._client = redis.Redis.from_url(url, decode_responses=True)
        try:
            self._client.ping()
        except redis.RedisError as error:
            raise OnlineStoreError(f"redis online store at {url} unreachable ({error})") from None
        self._error = redis.RedisError

    def _generation(self) -> str:
        return str(self._client.get(f"{self.prefix}:generation") or "0")

    def _write(self, rows: list[Row], replace: bool, meta: dict[str, str]) -> None:
        current = self._generation()
        generation = str(self._client.incr(f"{self.prefix}:generation_counter")) if replace else current
        base = f"{self.prefix}:{generation}"
        try:
            chunks = [rows[start : start + self.CHUNK] for start in range(0, len(rows), self.CHUNK)] or [[]]
            if replace:  # the new generation is invisible until the switch below
                for chunk in chunks:
                    self._put(self._client.pipeline(transaction=False), base, chunk).execute()
                switch = self._client.pipeline(transaction=True)
                fields: dict[Any, Any] = {**meta, "format": FORMAT}
                switch.hset(f"{base}:_meta", mapping=fields)
                switch.set(f"{self.prefix}:generation", generation)
                switch.execute()
            else:
                batch = self._put(self._client.pipeline(transaction=True), base, rows)
                if meta:
                    batch.hset(f"{base}:_meta", mapping=dict(meta))
                batch.execute()
        except BaseException:
            if replace:
                self._drop_generation(generation)
            raise
        if replace:
            self._drop_older_than(int(current))

    def _put(self, pipe: Any, base: str, rows: list[Row]) -> Any:
        for view, key, value, updated_at in rows:
            pipe.set(f"{base}:{view}:{key}", value)
            pipe.zadd(f"{base}:_updated:{view}", {key: updated_at})
        return pipe

    def _drop_generation(self, generation: str) -> None:
        names = list(self._client.scan_iter(match=f"{self.prefix}:{generation}:*", count=1000))
        for start in range(0, len(names), self.CHUNK):
            self._client.unlink(*names[start : start + self.CHUNK])

    def _drop_older_than(self, keep: int) -> None:
        """Delete generations before ``keep`` (the one readers may still hold is kept one push longer)."""
        for generation in range(max(keep - 3, 0), keep):
            self._drop_generation(str(generation))

    def _read(self, view: str, keys: list[str]) -> list[str | None]:
        base = f"{self.prefix}:{self._generation()}"
        return cast(list[str | None], self._client.mget([f"{base}:{view}:{key}" for key in keys]))

    def _read_meta(self) -> dict[str, str]:
        return cast(dict[str, str], self._client.hgetall(f"{self.prefix}:{self._generation()}:_meta"))

    def _expire(self, cutoffs: dict[str, int]) -> int:
        base = f"{self.prefix}:{self._generation()}"
        stale = {
            view: cast(list[str], self._client.zrangebyscore(f"{base}:_updated:{view}", "-inf", f"({cutoff}"))
            for view, cutoff in cutoffs.items()
        }
        batch = self._client.pipeline(transaction=True)
        for view, keys in stale.items():
            for start in range(0, len(keys), self.CHUNK):
                chunk = keys[start : start + self.CHUNK]
                batch.unlink(*(f"{base}:{view}:{key}" for key in chunk))
                batch.zrem(f"{base}:_updated:{view}", *chunk)
        batch.execute()
        return sum(len(keys) for keys in stale.values())

    def close(self) -> None:
        self._client.close()


def open_online_store(config: FeaturesConfig, root_dir: str | Path) -> OnlineStore:
    """The configured backend; a relative SQLite path is resolved against ``root_dir``."""
    online = config.online
    if online.backend == "redis":
        return RedisOnlineStore(config, online.redis_url, online.redis_prefix)
    path = Path(online.sqlite_path)
    return SQLiteOnlineStore(config, path if path.is_absolute() else Path(root_dir) / path)


# -- publishing and serving ------------------------------------------------------------------------


def _serialized(frame: pl.DataFrame, view: str, keys: Sequence[str], updated_at: int) -> Iterator[Row]:
    if frame.is_empty():
        return
    for name in keys:
        if frame[name].is_null().any():
            raise FeatureInputError(f"view {view!r}: a row has no {name}")
    encoded = frame.select(
        pl.concat_str([pl.col(name) for name in keys], separator=KEY_SEPARATOR).alias("key"),
        pl.struct(pl.all()).struct.json_encode().alias("value"),
    )
    for key, value in encoded.iter_rows():
        yield view, key, value, updated_at


def push_materialized(
    store: OnlineStore,
    frames: dict[str, pl.DataFrame],
    as_of: int,
    recommendations: pl.DataFrame | None = None,
    meta: Mapping[str, str] | None = None,
) -> int:
    """Replace the store's content with ``frames`` (from :func:`~feature_store.offline.materialize`)
    and, when given, batch ``recommendations`` (user_id, item_id, rank, score), in one atomic push."""
    check_frames(frames, store.registry, store.config)
    rows: list[Row] = []
    for name, keys in store.keys.items():
        if name == HISTORY:
            frame = (
                frames[HISTORY].sort(SEQUENCE_ORDER).group_by(USER_ID, maintain_order=True).agg(ITEM_ID, TS)
            )
        elif name == COVISIT_TABLE:
            frame = (
                frames[COVISIT_TABLE].group_by(ITEM_ID, maintain_order=True).agg("other_item_id", "weight")
            )
        elif name == RECOMMENDATIONS:
            if recommendations is None:
                continue
            frame = (
                recommendations.sort(USER_ID, "rank")
                .group_by(USER_ID, maintain_order=True)
                .agg(pl.col(ITEM_ID), pl.col("score").cast(pl.Float64))
            )
        else:
            frame = frames[name]
        rows.extend(_serialized(frame, name, keys, as_of))
    pushed = {**(meta or {}), "as_of": str(as_of), "definitions": store.definitions_version}
    store._write(rows, replace=True, meta=pushed)
    return len(rows)


def _check_definitions(store: OnlineStore) -> int | None:
    meta = store.read_meta()
    pushed = meta.get("definitions")
    if pushed is not None and pushed != store.definitions_version:
        raise OnlineStoreError(
            f"online store holds state of feature definitions {pushed}, "
            f"these are {store.definitions_version}: push a fresh materialization"
        )
    return int(meta["as_of"]) if "as_of" in meta else None


def _frame(values: Iterable[dict[str, Any] | None], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.from_dicts([value for value in values if value is not None], schema=schema)


def get_user_history(store: OnlineStore, user_id: str) -> list[tuple[str, int]]:
    """The user's latest events ``(item_id, ts)``, oldest first, at most ``recent_items``."""
    (state,) = store.read_many(HISTORY, [(user_id,)])
    if state is None:
        return []
    return list(zip(state[ITEM_ID], state[TS], strict=True))


def get_recommendations(store: OnlineStore, user_id: str) -> list[tuple[str, float]]:
    """The pushed batch recommendations ``(item_id, score)`` of ``user_id``, best first (empty if none)."""
    (state,) = store.read_many(RECOMMENDATIONS, [(user_id,)])
    if state is None:
        return []
    return list(zip(state[ITEM_ID], state["score"], strict=True))


def get_online_features(
    store: OnlineStore, user_id: str, item_ids: Sequence[str], now: int, feature_set: FeatureSet | None = None
) -> pl.DataFrame:
    """Features of ``user_id`` × each of ``item_ids`` at ``now``: the columns of
    :func:`~feature_store.offline.training_frame` for rows ``(user_id, item_id, ts=now)``."""
    registry = store.registry
    features = registry.resolve(feature_set or default_feature_set(store.config))
    _check_definitions(store)
    rows = pl.DataFrame(
        {USER_ID: [user_id] * len(item_ids), ITEM_ID: list(item_ids), TS: [now] * len(item_ids)}
    )
    rows = rows.cast({USER_ID: pl.String, ITEM_ID: pl.String, TS: pl.Int64})
    unique_items = list(dict.fromkeys(item_ids))
    frames: dict[str, pl.DataFrame] = {}
    categories: list[str] = []
    for name, view in registry.views.items():
        if view.source == "covisit":
            continue
        schema = store.schemas[name]
        keys: list[tuple[str, ...]]
        if view.entity.keys == (ITEM_ID,):
            keys = [(item,) for item in unique_items]
        elif view.entity.keys == (USER_ID,):
            keys = [(user_id,)]
        elif view.entity.keys == (USER_ID, ITEM_ID):
            keys = [(user_id, item) for item in unique_items]
        else:
            keys = [(user_id, category) for category in categories]
        frames[name] = _frame(store.read_many(name, keys), schema)
        if "item_category" in frames[name].columns:
            categories = frames[name]["item_category"].drop_nulls().unique().sort().to_list()
    history = get_user_history(store, user_id)
    frames[HISTORY] = pl.DataFrame(
        {
            USER_ID: [user_id] * len(history),
            ITEM_ID: [item for item, _ in history],
            TS: [ts for _, ts in history],
        },
        schema=HISTORY_SCHEMA,
    )
    sources = list(dict.fromkeys(item for item, _ in history))
    table_rows = store.read_many(COVISIT_TABLE, [(item,) for item in sources])
    frames[COVISIT_TABLE] = pl.DataFrame(
        [
            (source, other, weight)
            for source, row in zip(sources, table_rows, strict=True)
            if row is not None
            for other, weight in zip(row["other_item_id"], row["weight"], strict=True)
        ],
        schema=COVISIT_SCHEMA,
        orient="row",
    )
    return assemble(rows, frames, now, registry, features)


# -- live events -------------------------------------------------------------------------------------


def _decay_add(total: float, ref: int, ts: int, half_life_s: float) -> tuple[float, int]:
    """Add one event at ``ts`` to a decayed sum stored at ``ref``; the result refers to the later moment."""
    if ts >= ref:
        return total * math.pow(2.0, -(ts - ref) / half_life_s) + 1.0, ts
    return total + math.pow(2.0, -(ref - ts) / half_life_s), ref


def apply_events(
    store: OnlineStore, events: pl.DataFrame, items: pl.DataFrame, config: FeaturesConfig
) -> int:
    """Fold live events into the user's history and user, user×item and user×category state.

    Events must not be older than the last push (they would be counted twice): such a
    batch is refused whole. Returns the number of records written (atomically).
    """
    as_of = _check_definitions(store)
    frame = _events(events, items).collect().sort(SEQUENCE_ORDER)
    if as_of is not None and (frame[TS] < as_of).any():
        row = frame.filter(pl.col(TS) < as_of).row(0, named=True)
        raise FeatureInputError(
            f"events: user {row[USER_ID]} item {row[ITEM_ID]} ts {row[TS]} is before the last push "
            f"({as_of}); re-materialize instead"
        )
    windows = store.registry.view("user").windows_days
    half_life_s = config.affinity_half_life_days * DAY
    users = frame[USER_ID].unique(maintain_order=True).to_list()
    pairs = frame.select(USER_ID, ITEM_ID).unique(maintain_order=True).rows()
    user_categories = frame.filter(pl.col(CATEGORY).is_not_null()).select(USER_ID, CATEGORY)
    category_pairs = user_categories.unique(maintain_order=True).rows()

    user_state = dict(zip(users, store.read_many("user", [(user,) for user in users]), strict=True))
    history = dict(zip(users, store.read_many(HISTORY, [(user,) for user in users]), strict=True))
    pair_state = dict(zip(pairs, store.read_many("user_item", pairs), strict=True))
    category_state = dict(zip(category_pairs, store.read_many("user_category", category_pairs), strict=True))
    updated: dict[tuple[str, tuple[str, ...]], int] = {}

    for user_id, item_id, ts, _weight, rating, category in frame.iter_rows():
        user = user_state[user_id] or {
            **{f"user_n_{days}d": 0 for days in windows},
            USER_ID: user_id,
            "user_n_all": 0,
            "user_last_ts": None,
            "user_rating_sum": 0.0,
            "user_rating_count": 0,
            "user_n_categories": 0,
            "user_decay_sum": 0.0,
            "user_decay_ref_ts": ts,
        }
        for days in windows:
            user[f"user_n_{days}d"] += 1
        user["user_n_all"] += 1
        user["user_last_ts"] = max(ts, user["user_last_ts"] or ts)
        if rating is not None:
            user["user_rating_sum"] += rating
            user["user_rating_count"] += 1
        user["user_decay_sum"], user["user_decay_ref_ts"] = _decay_add(
            user["user_decay_sum"], user["user_decay_ref_ts"], ts, half_life_s
        )
        user_state[user_id] = user
        updated[("user", (user_id,))] = ts

        pair = pair_state[(user_id, item_id)] or {
            USER_ID: user_id,
            ITEM_ID: item_id,
            "ui_n": 0,
            "ui_last_ts": ts,
        }
        pair["ui_n"] += 1
        pair["ui_last_ts"] = max(ts, pair["ui_last_ts"])
        pair_state[(user_id, item_id)] = pair
        updated[("user_item", (user_id, item_id))] = ts

        if category is not None:
            affinity = category_state[(user_id, category)]
            if affinity is None:
                affinity = {USER_ID: user_id, CATEGORY: category, "uc_decay_sum": 0.0, "uc_decay_ref_ts": ts}
                user["user_n_categories"] += 1
            affinity["uc_decay_sum"], affinity["uc_decay_ref_ts"] = _decay_add(
                affinity["uc_decay_sum"], affinity["uc_decay_ref_ts"], ts, half_life_s
            )
            category_state[(user_id, category)] = affinity
            updated[("user_category", (user_id, category))] = ts

        recent = history[user_id] or {ITEM_ID: [], TS: []}
        merged = sorted([*zip(recent[TS], recent[ITEM_ID], strict=True), (ts, item_id)])[
            -config.recent_items :
        ]
        history[user_id] = {ITEM_ID: [item for _, item in merged], TS: [moment for moment, _ in merged]}
        updated[(HISTORY, (user_id,))] = ts

    states: dict[str, Mapping[Any, dict[str, Any] | None]] = {
        "user": {(user,): state for user, state in user_state.items()},
        HISTORY: {(user,): state for user, state in history.items()},
        "user_item": pair_state,
        "user_category": category_state,
    }
    records = []
    for (view, key), ts in updated.items():
        state = states[view][key]
        assert state is not None
        records.append(Record(view, key, state, ts))
    return store.write_batch(records)
