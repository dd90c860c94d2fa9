"""The online store's interface: state per (view, entity key) plus the log of live events.

Backends (:mod:`feature_store.online_sqlite`, :mod:`feature_store.online_redis`) implement the
storage; this class holds the contract every backend passes (validation, serialization, ttl).

The exposure log (answers served under an online experiment, and the events attributed to them)
lives beside the event log, so every worker and the experiment report see the same record.

Writers serialize through the store itself (:meth:`OnlineStore.exclusive`: an SQLite write
transaction, a Redis lock), never through a host-local file, so reads taken inside it see the
latest state and nothing can change it before the write that follows.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import polars as pl
from redis.exceptions import RedisError

from feature_store.definitions import DAY, ITEM_ID, TS, USER_ID, FeatureDefinitionError
from feature_store.offline import COVISIT_TABLE, HISTORY, FeatureInputError, state_schema
from feature_store.repository import build_registry, default_feature_set
from recsys.config import FeaturesConfig

KEY_SEPARATOR = "\x1f"
FORMAT = "recsys-online-store/1"
"""The event log is an addition the format tolerates: older stores gain it when opened."""
RECOMMENDATIONS = "recommendations"
STORED_TABLES = {HISTORY: (USER_ID,), COVISIT_TABLE: (ITEM_ID,), RECOMMENDATIONS: (USER_ID,)}
"""Stored besides the views: each user's recent history, each item's co-visitation row and the
promoted run's batch recommendations per user (for consumers that read the store directly)."""


class OnlineStoreError(RuntimeError):
    """The store cannot be opened, is corrupt, or holds state of other feature definitions."""


class OnlineStoreBusy(OnlineStoreError):
    """Another writer held the store longer than this one was willing to wait."""


STORE_UNAVAILABLE: tuple[type[Exception], ...] = (OnlineStoreError, sqlite3.OperationalError, RedisError)
"""What a store raises when it cannot answer now (a lock held too long, a server gone): a request
answers 503 and the caller retries; any other error is a bug."""


@dataclass(frozen=True)
class Record:
    """The state of one entity in one view (or stored table) as of ``updated_at``."""

    view: str
    key: tuple[str, ...]
    values: Mapping[str, Any]
    updated_at: int


@dataclass(frozen=True)
class LoggedEvent:
    """One accepted live event as the log keeps it: enough to replay it onto a later push."""

    event_id: str | None
    user_id: str
    item_id: str
    ts: int
    event: str
    weight: float
    rating: float | None
    category: str | None
    """The item's first category when the event was accepted (the state it moved depends on it)."""


@dataclass(frozen=True)
class Exposure:
    """One answer served under an online experiment: which arm's run answered whom, when, with what."""

    recommendation_id: str
    experiment: str
    arm: str
    run_id: str
    user_id: str
    ts: int
    """Unix seconds (the server's clock) when the answer was sent."""
    items: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """A live event attributed to an exposure: by the recommendation id it carried, or by arriving
    within the experiment's window after the user's latest exposure."""

    recommendation_id: str
    experiment: str
    arm: str
    user_id: str
    item_id: str
    event: str
    ts: int
    shown: bool
    """The item was in the exposure's list (a click-through, not just any later event)."""
    via: str
    """``id`` (the event named the recommendation) or ``window`` (attributed by time)."""


Row = tuple[str, str, str, int]
"""A serialized record: view, encoded key, JSON value, updated_at."""


class OnlineStore(ABC):
    """State per (view, entity key) and the event log; subclasses implement the storage."""

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

    @property
    def user_views(self) -> list[str]:
        """Views and tables whose first key is the user: what :meth:`forget` removes."""
        return [view for view, keys in self.keys.items() if keys[0] == USER_ID]

    # -- the contract ----------------------------------------------------------------
    def write_batch(
        self,
        records: Iterable[Record],
        meta: Mapping[str, str] | None = None,
        events: Sequence[LoggedEvent] = (),
    ) -> int:
        """Write all records and meta entries and append ``events`` to the log, or none of it;
        returns how many records were written."""
        rows = [self.serialize(record) for record in records]
        self._write(rows, dict(meta or {}), list(events))
        return len(rows)

    def read_many(self, view: str, keys: Sequence[tuple[str, ...]]) -> list[dict[str, Any] | None]:
        """The state for each key (None where there is none), in the order of ``keys``."""
        encoded = [self.encode_key(view, key) for key in keys]
        if not encoded:
            return []
        return [None if raw is None else json.loads(raw) for raw in self._read(view, encoded)]

    def read_user_items(
        self, view: str, user_id: str, item_ids: Sequence[str]
    ) -> list[dict[str, Any] | None]:
        """:meth:`read_many` of the (``user_id``, item) keys of a two-part view, for hundreds of candidates
        per request: the user is checked once and the items by one pass (the per-key checks of
        :meth:`encode_key` cost more than the read itself)."""
        expected = self.keys.get(view)
        if expected is None or len(expected) != 2:
            raise FeatureDefinitionError(f"view {view!r} is not keyed by (user, item) in this store")
        if not isinstance(user_id, str) or not user_id or KEY_SEPARATOR in user_id:
            raise FeatureDefinitionError(f"view {view!r}: bad {expected[0]} {user_id!r}")
        bad = next(
            (item for item in item_ids if not isinstance(item, str) or not item or KEY_SEPARATOR in item),
            None,
        )
        if bad is not None:
            raise FeatureDefinitionError(f"view {view!r}: bad {expected[1]} {bad!r}")
        if not item_ids:
            return []
        prefix = user_id + KEY_SEPARATOR
        raw = self._read(view, [prefix + item for item in item_ids])
        return [None if value is None else json.loads(value) for value in raw]

    def read_meta(self) -> dict[str, str]:
        return self._read_meta()

    def expire(self, now: int) -> int:
        """Drop state not refreshed (by a push or an event) within its view's ttl before ``now``,
        and log entries (with their event ids), exposures and outcomes older than the store's ttl."""
        default_ttl = self.config.online.ttl_days
        cutoffs = {}
        for view in self.keys:
            ttl = self.registry.views[view].ttl_days if view in self.registry.views else None
            cutoffs[view] = now - int((ttl or default_ttl) * DAY)
        return self._expire(cutoffs, now - int(default_ttl * DAY))

    @abstractmethod
    def exclusive(self) -> AbstractContextManager[None]:
        """Hold the store's write lock (re-entrant within a thread): reads inside see the latest
        state and no other writer, on any host, changes it until the block ends. Raises
        :class:`OnlineStoreBusy` when the lock stays taken too long."""

    @abstractmethod
    def replace_all(self, rows: list[Row], meta: Mapping[str, str]) -> None:
        """Atomically replace every record and meta entry (a push); the event log is kept."""

    @abstractmethod
    def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` the log already holds."""

    @abstractmethod
    def logged_events(self, since: int | None = None, user_id: str | None = None) -> list[LoggedEvent]:
        """The log's events with ``ts >= since`` (all when None), optionally of one user, in the
        order they were accepted."""

    @abstractmethod
    def forget(self, user_id: str) -> int:
        """Remove everything held about ``user_id``: state keyed by them, their history, batch
        recommendations, log entries, exposures and outcomes. Returns the number removed."""

    @abstractmethod
    def held_about(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The stored state of every user-keyed view and table for ``user_id`` (views with none left
        out): what :meth:`forget` would remove, besides the log."""

    # -- the exposure log of online experiments ---------------------------------------
    @abstractmethod
    def log_exposures(self, exposures: Sequence[Exposure]) -> None:
        """Append ``exposures`` (durably, under the write lock); a recommendation id is written once."""

    @abstractmethod
    def log_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Append attributed events (under the write lock: call it inside the event write's block)."""

    @abstractmethod
    def exposures(self, experiment: str) -> list[Exposure]:
        """Every logged exposure of ``experiment``, in the order they were logged."""

    @abstractmethod
    def exposures_by_id(self, recommendation_ids: Sequence[str]) -> dict[str, Exposure]:
        """The logged exposures among ``recommendation_ids`` (unknown or expired ids left out)."""

    @abstractmethod
    def latest_exposure(self, experiment: str, user_id: str) -> Exposure | None:
        """The user's most recent exposure in ``experiment`` (None: never exposed, or expired)."""

    @abstractmethod
    def outcomes(self, experiment: str) -> list[Outcome]:
        """Every attributed event of ``experiment``, in the order they were logged."""

    @abstractmethod
    def user_exposures(self, user_id: str) -> list[Exposure]:
        """Every logged exposure of ``user_id`` in any experiment, in the order they were logged
        (what an export of the user shows and :meth:`forget` removes)."""

    @abstractmethod
    def user_outcomes(self, user_id: str) -> list[Outcome]:
        """Every attributed event of ``user_id`` in any experiment, in the order they were logged."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- storage, per backend --------------------------------------------------------
    @abstractmethod
    def _write(self, rows: list[Row], meta: dict[str, str], events: list[LoggedEvent]) -> None:
        """Atomically write ``rows`` and ``meta`` and append ``events`` to the log."""

    @abstractmethod
    def _read(self, view: str, keys: list[str]) -> list[str | None]: ...

    @abstractmethod
    def _read_meta(self) -> dict[str, str]: ...

    @abstractmethod
    def _expire(self, cutoffs: dict[str, int], log_cutoff: int) -> int: ...

    # -- validation ------------------------------------------------------------------
    def encode_key(self, view: str, key: tuple[str, ...]) -> str:
        """The key parts joined by :data:`KEY_SEPARATOR`, checked against the view's entity keys."""
        if view not in self.keys:
            raise FeatureDefinitionError(f"unknown view {view!r}; the store holds: {', '.join(self.keys)}")
        expected = self.keys[view]
        if not isinstance(key, tuple) or len(key) != len(expected):
            raise FeatureDefinitionError(f"view {view!r}: key {key!r} does not match entity keys {expected}")
        for name, part in zip(expected, key, strict=True):
            if not isinstance(part, str) or not part or KEY_SEPARATOR in part:
                raise FeatureDefinitionError(f"view {view!r}: bad {name} {part!r} in key {key!r}")
        return KEY_SEPARATOR.join(key)

    def serialize(self, record: Record) -> Row:
        """The record as stored, after checking its key, columns and values."""
        key = self.encode_key(record.view, record.key)
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


def user_key_prefix(user_id: str) -> str:
    """The start of every encoded key whose first part is ``user_id`` and that has more parts."""
    return user_id + KEY_SEPARATOR


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
