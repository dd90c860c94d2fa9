"""The online store: the state of every view per entity key, served at request time, and the
log of live events that keeps it.

One :class:`~feature_store.online_store.OnlineStore` interface, two backends:
:class:`~feature_store.online_sqlite.SQLiteOnlineStore` (default; one file, WAL mode) and
:class:`~feature_store.online_redis.RedisOnlineStore`. The store holds *state*, not finished
values: the same :func:`feature_store.offline.assemble` that builds training frames turns it
into features at the request's ``now``, so online values equal offline ones for the same moment.

Freshness: :func:`push_materialized` replaces the state (nightly, and on a reload or rollback)
and replays onto it every logged event at or after the run's ``as_of``, so nothing posted is
lost. :func:`apply_events` folds live events into the user's history and the ``user``,
``user_item`` and ``user_category`` state and appends them to the log, in one write. Item
state (``item``, ``item_meta``) and the co-visitation table move only with the next push, and
an event leaves a user's time-window counts only then.

Durability and idempotency: an event is in the log before it is acknowledged; an event with an
``event_id`` the log already holds is skipped (a client's retry counts once); ids expire with
their log entries (:meth:`OnlineStore.expire`). Writers serialize through the store
(:meth:`OnlineStore.exclusive`) and read the state they change inside it. The next nightly run
reads the log back with :func:`logged_interactions`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import polars as pl

from feature_store.aggregations import DistinctCount
from feature_store.columns import CATEGORY, ITEM_ID, RATING, TS, USER_ID, WEIGHT
from feature_store.covisit import SEQUENCE_ORDER
from feature_store.definitions import FeatureSet, FeatureView
from feature_store.offline import (
    COVISIT_SCHEMA,
    COVISIT_TABLE,
    HISTORY,
    HISTORY_SCHEMA,
    FeatureInputError,
    assemble,
    check_frames,
)
from feature_store.online_redis import RedisOnlineStore
from feature_store.online_sqlite import SQLiteOnlineStore
from feature_store.online_store import (
    KEY_SEPARATOR,
    RECOMMENDATIONS,
    STORE_UNAVAILABLE,
    LoggedEvent,
    OnlineStore,
    OnlineStoreBusy,
    OnlineStoreError,
    Record,
    Row,
)
from feature_store.repository import default_feature_set
from recsys.config import FeaturesConfig
from recsys.data.schema import DEFAULT_EVENT, INTERACTIONS_SCHEMA


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
    """Replace the store's state with ``frames`` (from :func:`~feature_store.offline.materialize`)
    and, when given, batch ``recommendations`` (user_id, item_id, rank, score), then replay the
    logged events at or after ``as_of`` (newer than the run's data) onto it: one atomic push
    under the store's write lock, so no event is accepted between the replay and the switch."""
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
    with store.exclusive():
        replayed = store.logged_events(since=as_of)
        if replayed:
            position = {(view, key): index for index, (view, key, _, _) in enumerate(rows)}

            def pending(view: str, keys: Sequence[tuple[str, ...]]) -> list[dict[str, Any] | None]:
                found = (position.get((view, store.encode_key(view, key))) for key in keys)
                return [None if index is None else json.loads(rows[index][2]) for index in found]

            for record in _fold(replayed, pending, store, store.config):
                row = store.serialize(record)
                index = position.get((row[0], row[1]))
                if index is None:
                    position[(row[0], row[1])] = len(rows)
                    rows.append(row)
                else:
                    rows[index] = row
        store.replace_all(rows, pushed)
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


@dataclass(frozen=True)
class EventsApplied:
    """What :func:`apply_events` did: state records written, events logged, retries skipped."""

    records: int
    logged: int
    duplicates: int


Reader = Callable[[str, Sequence[tuple[str, ...]]], list[dict[str, Any] | None]]


def _logged(events: pl.DataFrame, items: pl.DataFrame) -> list[LoggedEvent]:
    """The events as the log keeps them, with the item's first category from ``items``.

    Row by row in Python: a request's batch is small, and per-row polars expressions would cost
    more than the fold itself.
    """
    missing = [column for column in (USER_ID, ITEM_ID, TS) if column not in events.columns]
    if missing:
        raise FeatureInputError(
            f"events: missing columns {', '.join(missing)} (has {', '.join(events.columns)})"
        )
    for column in (USER_ID, ITEM_ID, TS):
        nulls = events[column].is_null()
        if nulls.any():
            raise FeatureInputError(f"events: row {int(nulls.arg_true()[0])} has no {column}")
    rows = events.rows(named=True)
    categories: dict[str, str | None] = {}
    if "categories" in items.columns:
        needed = items.filter(pl.col(ITEM_ID).is_in({str(row[ITEM_ID]) for row in rows}))
        for item_id, first in needed.select(ITEM_ID, pl.col("categories").list.first()).iter_rows():
            categories.setdefault(item_id, first)
    logged = []
    for row in rows:
        event_id, rating, weight = row.get("event_id"), row.get("rating"), row.get("weight")
        item_id = str(row[ITEM_ID])
        logged.append(
            LoggedEvent(
                event_id=None if event_id is None else str(event_id),
                user_id=str(row[USER_ID]),
                item_id=item_id,
                ts=int(row[TS]),
                event=str(row.get("event") or DEFAULT_EVENT),
                weight=1.0 if weight is None else float(weight),
                rating=None if rating is None else float(rating),
                category=categories.get(item_id),
            )
        )
    return logged


def _event_columns(event: LoggedEvent) -> dict[str, Any]:
    """A logged event as the aggregations read it (:data:`~feature_store.columns.EVENT_COLUMNS`)."""
    return {
        USER_ID: event.user_id,
        ITEM_ID: event.item_id,
        TS: event.ts,
        WEIGHT: event.weight,
        RATING: event.rating,
        CATEGORY: event.category,
    }


def _fold(
    events: Sequence[LoggedEvent], read: Reader, store: OnlineStore, config: FeaturesConfig
) -> list[Record]:
    """The records ``events`` change, folded onto the state ``read`` returns (the store's, or a push's).

    Generic over the registry's live views: each event moves the state of every live view at the
    event's key by each of the view's aggregations (state the key lacked starts empty). An event
    with a null key (no category) leaves that view alone, as offline.
    """
    registry = store.registry
    live = [view for view in registry.views.values() if view.live]
    ordered = [_event_columns(event) for event in sorted(events, key=lambda e: (e.user_id, e.ts, e.item_id))]
    keyed: dict[str, list[tuple[str, ...] | None]] = {
        view.name: [_key(view, event) for event in ordered] for view in live
    }
    states: dict[str, dict[tuple[str, ...], dict[str, Any] | None]] = {}
    for view in live:
        wanted = list(dict.fromkeys(key for key in keyed[view.name] if key is not None))
        states[view.name] = dict(zip(wanted, read(view.name, wanted), strict=True))
    companions = {
        (view.name, aggregation.column): registry.keyed_by(view, aggregation.column).name
        for view in live
        for aggregation in view.aggregations
        if isinstance(aggregation, DistinctCount)
    }
    users = list(dict.fromkeys(event[USER_ID] for event in ordered))
    history = dict(zip(users, read(HISTORY, [(user,) for user in users]), strict=True))
    updated: dict[tuple[str, tuple[str, ...]], int] = {}

    for position, event in enumerate(ordered):
        keys = {view.name: keyed[view.name][position] for view in live}
        existed = {name: key is not None and states[name][key] is not None for name, key in keys.items()}
        for view in live:
            key = keys[view.name]
            if key is None:
                continue
            state = states[view.name][key]
            if state is None:
                state = dict(zip(view.entity.keys, key, strict=True))
                for aggregation in view.aggregations:
                    state.update(aggregation.start(event))
                states[view.name][key] = state
            is_new = partial(_is_new, existed, companions, view.name)
            for aggregation in view.aggregations:
                aggregation.fold(state, event, is_new)
            updated[(view.name, key)] = event[TS]

        user_id, item_id, ts = event[USER_ID], event[ITEM_ID], event[TS]
        recent = history[user_id] or {ITEM_ID: [], TS: []}
        merged = sorted([*zip(recent[TS], recent[ITEM_ID], strict=True), (ts, item_id)])[
            -config.recent_items :
        ]
        history[user_id] = {ITEM_ID: [item for _, item in merged], TS: [moment for moment, _ in merged]}
        updated[(HISTORY, (user_id,))] = ts

    records = []
    for (view_name, key), ts in updated.items():
        state = history[key[0]] if view_name == HISTORY else states[view_name][key]
        assert state is not None
        records.append(Record(view_name, key, state, ts))
    return records


def _is_new(
    existed: Mapping[str, bool], companions: Mapping[tuple[str, str], str], view: str, column: str
) -> bool:
    """Whether the event's ``column`` value is new for ``view``'s entity: the view keyed by the
    entity's keys plus ``column`` had no state for it before the event."""
    return not existed[companions[(view, column)]]


def _key(view: FeatureView, event: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The key of the view's state ``event`` moves (None: a key column has no value)."""
    key = tuple(event[column] for column in view.entity.keys)
    return None if any(part is None for part in key) else key


class HasEventId(Protocol):
    @property
    def event_id(self) -> str | None: ...


Logged = TypeVar("Logged", bound=HasEventId)


def unlogged(events: Iterable[Logged], known: set[str]) -> list[Logged]:
    """The events a write takes: no id in ``known`` (the log's), no id repeated earlier in the batch.

    ``known`` grows with the ids taken.
    """
    fresh = []
    for event in events:
        if event.event_id is not None:
            if event.event_id in known:
                continue
            known.add(event.event_id)
        fresh.append(event)
    return fresh


def apply_events(
    store: OnlineStore, events: pl.DataFrame, items: pl.DataFrame, config: FeaturesConfig
) -> EventsApplied:
    """Fold live events into the user's history and user, user×item and user×category state, and
    append them to the event log, in one write under the store's lock (state read inside it).

    ``events`` has user_id, item_id, ts and optionally event, weight, rating and event_id. An
    event whose ``event_id`` the log holds (or that repeats one earlier in the batch) is skipped.
    Events older than the last push would be counted twice: such a batch is refused whole.
    """
    logged = _logged(events, items)
    with store.exclusive():
        as_of = _check_definitions(store)
        known = store.known_event_ids([event.event_id for event in logged if event.event_id])
        fresh = unlogged(logged, known)
        stale = [event for event in fresh if as_of is not None and event.ts < as_of]
        if stale:
            raise FeatureInputError(
                f"events: user {stale[0].user_id} item {stale[0].item_id} ts {stale[0].ts} is before "
                f"the last push ({as_of}); re-materialize instead"
            )
        records = _fold(fresh, store.read_many, store, config) if fresh else []
        written = store.write_batch(records, events=fresh)
    return EventsApplied(records=written, logged=len(fresh), duplicates=len(logged) - len(fresh))


def logged_interactions(store: OnlineStore, since: int | None = None) -> pl.DataFrame:
    """The log's events with ``ts >= since`` (all when None) as an interactions frame in the
    canonical schema (:data:`recsys.data.schema.INTERACTIONS_SCHEMA`), oldest first: the live
    events the next run adds to its input."""
    events = store.logged_events(since=since)
    return pl.DataFrame(
        {
            USER_ID: [event.user_id for event in events],
            ITEM_ID: [event.item_id for event in events],
            TS: [event.ts for event in events],
            "event": [event.event for event in events],
            "weight": [event.weight for event in events],
            "rating": [event.rating for event in events],
        },
        schema=INTERACTIONS_SCHEMA,
    ).sort(TS, USER_ID, ITEM_ID, maintain_order=True)


def user_data(store: OnlineStore, user_id: str) -> dict[str, Any]:
    """Everything the store holds about ``user_id`` (for an export): the state of each user-keyed
    view and table (a list of records per view), the user's logged events, and the exposure log of
    online experiments (the answers served to them, and their events attributed to those)."""
    held: dict[str, Any] = store.held_about(user_id)
    held["events"] = [asdict(event) for event in store.logged_events(user_id=user_id)]
    held["exposures"] = [
        {**asdict(exposure), "items": list(exposure.items)} for exposure in store.user_exposures(user_id)
    ]
    held["outcomes"] = [asdict(outcome) for outcome in store.user_outcomes(user_id)]
    return held


__all__ = [
    "STORE_UNAVAILABLE",
    "EventsApplied",
    "OnlineStore",
    "OnlineStoreBusy",
    "OnlineStoreError",
    "Record",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "apply_events",
    "get_online_features",
    "get_recommendations",
    "get_user_history",
    "logged_interactions",
    "open_online_store",
    "push_materialized",
    "user_data",
]
