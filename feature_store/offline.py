"""Point-in-time materialization and training frames.

:func:`materialize` computes every view's state from events with ``ts < as_of`` only.
:func:`training_frame` joins features to arbitrary ``(user_id, item_id, ts)`` rows so that
each row sees only events before its own ts: the user side (a user's own views and history) for
every (user, ts) in one pass, exactly; the item side once per distinct ts, or per moment of a grid
at or before the ts when there are more than :data:`ITEM_GRID` (bounded work, never a later event).

:func:`assemble` turns state into feature values at a moment ``now``; the online store
calls the same function, which is why online and offline values agree.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from feature_store.columns import ITEM_TS
from feature_store.covisit import CovisitPairs, covisit_scores, covisitation_lazy, user_history
from feature_store.definitions import (
    AGE,
    AS_OF,
    CATEGORY,
    ITEM_ID,
    NOW,
    TS,
    USER_ID,
    Feature,
    FeatureDefinitionError,
    FeatureSet,
    FeatureView,
    Registry,
)
from feature_store.repository import build_registry, default_feature_set
from recsys.artifacts import atomic_write_json, atomic_write_parquet
from recsys.config import FeaturesConfig

HISTORY = "history"
"""Frame ``[user_id, item_id, ts]``: each user's last ``recent_items`` events."""
COVISIT_TABLE = "covisit_table"
"""Frame ``[item_id, other_item_id, weight]``: the co-visitation table."""
MANIFEST = "features.json"
ORDER = "_order"
ITEM_AS_OF = "_item_as_of"
"""The moment a training row's item-side state is cut at (see :func:`item_moments`)."""
ITEM_GRID = 48
"""Item-side moments of one training frame at most: their state is computed once per moment."""

HISTORY_SCHEMA: dict[str, pl.DataType] = {USER_ID: pl.String(), ITEM_ID: pl.String(), TS: pl.Int64()}
COVISIT_SCHEMA: dict[str, pl.DataType] = {
    ITEM_ID: pl.String(),
    "other_item_id": pl.String(),
    "weight": pl.Float64(),
}


class FeatureInputError(ValueError):
    """Rows, events or materialized files cannot be used; the message names the file, column or row."""


def _require(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise FeatureInputError(
            f"{what}: missing columns {', '.join(missing)} (has {', '.join(frame.columns)})"
        )
    for column in columns:
        nulls = frame[column].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise FeatureInputError(f"{what}: row {row} has no {column}")


def _events(interactions: pl.DataFrame, items: pl.DataFrame) -> pl.LazyFrame:
    """Interactions in the canonical columns with the item's first category (not yet cut at as_of)."""
    _require(interactions, (USER_ID, ITEM_ID, TS), "interactions")
    columns = interactions.columns
    categories = (
        items.lazy().select(ITEM_ID, pl.col("categories").list.first().alias(CATEGORY)).unique(ITEM_ID)
        if "categories" in items.columns
        else items.lazy().select(ITEM_ID, pl.lit(None, pl.String).alias(CATEGORY))
    )
    return (
        interactions.lazy()
        .select(
            pl.col(USER_ID).cast(pl.String),
            pl.col(ITEM_ID).cast(pl.String),
            pl.col(TS).cast(pl.Int64),
            (pl.col("weight") if "weight" in columns else pl.lit(1.0)).cast(pl.Float64).alias("weight"),
            (pl.col("rating") if "rating" in columns else pl.lit(None)).cast(pl.Float64).alias("rating"),
        )
        .join(categories, on=ITEM_ID, how="left")
    )


@dataclass
class _SharedItemState:
    """The item-side state of one moment, and the moment asked for last (see ``shared_item_state``)."""

    last_asked: int | None = None
    moment: int | None = None
    state: dict[str, pl.DataFrame] | None = None


@dataclass(frozen=True, eq=False)
class EventLog:
    """Interactions in the feature store's columns with each item's category, prepared once: point-in-
    time frames for many batches of rows (chunks of a batch job) cut it instead of preparing it again."""

    events: pl.DataFrame
    _pairs: dict[tuple[int, ...], CovisitPairs] = field(default_factory=dict, init=False, repr=False)
    _item_state: _SharedItemState = field(default_factory=_SharedItemState, init=False, repr=False)

    @classmethod
    def of(cls, interactions: pl.DataFrame, items: pl.DataFrame) -> EventLog:
        return cls(_events(interactions, items).collect())

    def covisit_pairs(self, config: FeaturesConfig) -> CovisitPairs:
        """The log's co-visitation pairs under ``config``'s limits, found on first use: every moment of
        every frame cut from this log reads its table from them."""
        key = (config.covisit_max_gap, config.covisit_max_seconds, config.covisit_top_per_item)
        if key not in self._pairs:
            self._pairs[key] = CovisitPairs.of(self.events, config)
        return self._pairs[key]

    def shared_item_state(
        self, moment: int, items: pl.DataFrame, registry: Registry, config: FeaturesConfig
    ) -> dict[str, pl.DataFrame] | None:
        """Item-side state of every item (and the whole co-visitation table) as of ``moment`` when the
        request before asked for the same moment, as a batch job's chunks do (None otherwise: a single
        request is cheaper restricted to its own items). Kept for that one moment."""
        kept = self._item_state
        repeated, kept.last_asked = kept.last_asked == moment, moment
        if repeated and kept.moment != moment:
            past = _as_of(self.events.lazy(), moment)
            plans = {
                view.name: view_state(view, past, items.lazy())
                for view in registry.views.values()
                if view.source != "covisit" and not _is_user_side(view)
            }
            state = dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))
            state[COVISIT_TABLE] = self.covisit_pairs(config).table(moment)
            kept.moment, kept.state = moment, state
        return kept.state if kept.moment == moment else None


def _as_of(events: pl.LazyFrame, as_of: int) -> pl.LazyFrame:
    """The events before ``as_of`` with their age (seconds) and ``as_of``."""
    return events.filter(pl.col(TS) < as_of).with_columns(
        (pl.lit(as_of, pl.Int64) - pl.col(TS)).alias(AGE), pl.lit(as_of, pl.Int64).alias(AS_OF)
    )


def view_state(
    view: FeatureView, events: pl.LazyFrame, items: pl.LazyFrame, per: tuple[str, ...] = ()
) -> pl.LazyFrame:
    """The view's state: its aggregations over the past events (or the catalog) grouped by entity
    keys (and ``per``: also by the moment each event was cut at); rows with a null key (an event whose
    item has no category) take no part."""
    source = items if view.source == "items" else events
    source = source.filter(*(pl.col(key).is_not_null() for key in view.entity.keys))
    return source.group_by(*view.entity.keys, *per).agg(
        expr for aggregation in view.aggregations for expr in aggregation.polars()
    )


def state_schema(view: FeatureView, config: FeaturesConfig) -> dict[str, pl.DataType]:
    """Column dtypes of a view's state (from the plan of an empty input, nothing is computed)."""
    empty_items = pl.DataFrame(schema={ITEM_ID: pl.String, "categories": pl.List(pl.String)})
    empty_events = _as_of(_events(pl.DataFrame(schema=HISTORY_SCHEMA), empty_items.clear()), 0)
    return dict(view_state(view, empty_events, empty_items.lazy()).collect_schema())


def materialize(
    interactions: pl.DataFrame, items: pl.DataFrame, as_of: int, config: FeaturesConfig
) -> dict[str, pl.DataFrame]:
    """Every view's state, plus ``history`` and ``covisit_table``, from events with ``ts < as_of``."""
    registry = build_registry(config)
    past = _as_of(_events(interactions, items), as_of)
    plans = {
        view.name: view_state(view, past, items.lazy())
        for view in registry.views.values()
        if view.source != "covisit"
    }
    plans[HISTORY] = user_history(past, config.recent_items)
    plans[COVISIT_TABLE] = covisitation_lazy(past, config)
    return dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))


def assemble(
    rows: pl.DataFrame, frames: dict[str, pl.DataFrame], now: int, registry: Registry, features: list[Feature]
) -> pl.DataFrame:
    """``rows`` plus one Float64 column per feature, read from ``frames`` (state) at ``now``.

    Missing state (no past events) gives each feature's ``fill``: 0 for counts, shares and
    means, 1 for the trend, :data:`~feature_store.definitions.NEVER_DAYS` for days-since.
    """
    joined = rows.lazy().with_row_index(ORDER).with_columns(pl.lit(now, pl.Int64).alias(NOW))
    for view in registry.views.values():
        if view.source == "covisit":
            scores = covisit_scores(frames[HISTORY].lazy(), frames[COVISIT_TABLE].lazy())
            joined = joined.join(scores, on=[USER_ID, ITEM_ID], how="left")
        else:
            joined = joined.join(
                frames[view.name].lazy(),
                left_on=list(view.entity.row_keys),
                right_on=list(view.entity.keys),
                how="left",
            )
    values = [feature.polars() for feature in features]
    return joined.sort(ORDER).select(*rows.columns, *values).collect()


def _check_rows(rows: pl.DataFrame) -> pl.DataFrame:
    _require(rows, (USER_ID, ITEM_ID, TS), "rows")
    reserved = [column for column in rows.columns if column in (ORDER, NOW, AS_OF, ITEM_AS_OF)]
    if reserved:
        raise FeatureInputError(f"rows: reserved column names {', '.join(reserved)}")
    rows = rows.with_columns(
        pl.col(USER_ID).cast(pl.String), pl.col(ITEM_ID).cast(pl.String), pl.col(TS).cast(pl.Int64)
    )
    if ITEM_TS in rows.columns:
        rows = rows.with_columns(pl.col(ITEM_TS).cast(pl.Int64))
        late = rows.with_row_index("row").filter(~(pl.col(ITEM_TS) <= pl.col(TS)))
        if late.height:
            raise FeatureInputError(
                f"rows: row {late['row'][0]}: field {ITEM_TS!r} must be a moment at or before {TS!r} "
                f"(an item's state after the user's moment would see the future); {late.height} such row(s)"
            )
    return rows


def item_moments(ts: pl.Series, points: int = ITEM_GRID) -> pl.Series:
    """Each ``ts`` moved down to one of at most ``points`` moments (quantiles of the distinct ts; the ts
    themselves when there are no more): item-side state is computed once per moment, never after the ts."""
    values = ts.to_numpy()
    distinct = np.unique(values)
    if len(distinct) <= points:
        return pl.Series(ITEM_AS_OF, values, pl.Int64)
    grid = np.unique(np.quantile(distinct, np.linspace(0.0, 1.0, points), method="lower"))
    return pl.Series(ITEM_AS_OF, grid[np.searchsorted(grid, values, side="right") - 1], pl.Int64)


def _is_user_side(view: FeatureView) -> bool:
    """State built from one user's own events (user, user x item, user x category views)."""
    return view.source == "events" and USER_ID in view.entity.keys


def training_frame(
    rows: pl.DataFrame,
    interactions: pl.DataFrame | EventLog,
    items: pl.DataFrame,
    config: FeaturesConfig,
    feature_set: FeatureSet | None = None,
) -> pl.DataFrame:
    """``rows`` (any columns incl. user_id, item_id, ts) in the same order plus one Float64 column per
    feature of ``feature_set`` (default: all), read out at the row's ts from ``interactions`` (or an
    :class:`EventLog` of them prepared once for many calls) before it.

    User-side state (the user's own views and recent history) is computed from the user's events
    strictly before the row's ts, for every (user, ts) in one pass; item-side state (item views and
    co-visitation) as of :func:`item_moments` of the rows' ``item_ts`` when they carry one (the
    caller's own grid, :data:`~feature_store.columns.ITEM_TS`), else of their ts: the moment itself for
    up to :data:`ITEM_GRID` distinct moments, else the grid moment at or before it. So a user's latest
    events always count, as they do online, where item state comes from the last push and user state
    is live.
    """
    registry = build_registry(config)
    features = registry.resolve(feature_set or default_feature_set(config))
    rows = _check_rows(rows)
    if rows.is_empty():
        return rows.with_columns(pl.lit(None, pl.Float64).alias(feature.name) for feature in features)
    log = interactions if isinstance(interactions, EventLog) else EventLog.of(interactions, items)
    events = log.events.lazy()
    frame = rows.with_row_index(ORDER).with_columns(
        pl.col(TS).alias(NOW),
        pl.col(TS).alias(AS_OF),
        item_moments(rows[ITEM_TS] if ITEM_TS in rows.columns else rows[TS]),
    )
    per = (USER_ID, AS_OF)
    user_frames = _user_side(events, frame, registry, config)
    item_frames = _item_side(log, items, frame, user_frames[HISTORY], registry, config)
    joined = frame.lazy()
    for view in registry.views.values():
        if view.source == "covisit":
            joined = joined.join(item_frames[COVISIT_TABLE].lazy(), on=[*per, ITEM_ID], how="left")
        elif _is_user_side(view):
            keys, row_keys = [*view.entity.keys, AS_OF], [*view.entity.row_keys, AS_OF]
            joined = joined.join(user_frames[view.name].lazy(), left_on=row_keys, right_on=keys, how="left")
        else:
            keys, row_keys = [*view.entity.keys, ITEM_AS_OF], [*view.entity.row_keys, ITEM_AS_OF]
            joined = joined.join(item_frames[view.name].lazy(), left_on=row_keys, right_on=keys, how="left")
    values = [feature.polars() for feature in features]
    return joined.sort(ORDER).select(*rows.columns, *values).collect()


def _user_side(
    events: pl.LazyFrame, frame: pl.DataFrame, registry: Registry, config: FeaturesConfig
) -> dict[str, pl.DataFrame]:
    """User-side views' state and the recent history per (user, ``AS_OF``): each from that user's own
    events before the moment, with their age at it."""
    moments = frame.select(USER_ID, AS_OF).unique().lazy()
    past = (
        events.join(moments, on=USER_ID)
        .filter(pl.col(TS) < pl.col(AS_OF))
        .with_columns((pl.col(AS_OF) - pl.col(TS)).alias(AGE))
    )
    candidates = past.filter(pl.col(ITEM_ID).is_in(frame[ITEM_ID].unique().implode()))
    no_catalog = pl.LazyFrame()  # user-side views aggregate events only
    plans = {
        view.name: view_state(
            view, candidates if ITEM_ID in view.entity.keys else past, no_catalog, per=(AS_OF,)
        )
        for view in registry.views.values()
        if _is_user_side(view)
    }
    plans[HISTORY] = user_history(past, config.recent_items, per=(USER_ID, AS_OF))
    return dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))


def _item_side(
    log: EventLog,
    items: pl.DataFrame,
    frame: pl.DataFrame,
    history: pl.DataFrame,
    registry: Registry,
    config: FeaturesConfig,
) -> dict[str, pl.DataFrame]:
    """Item-side views' state per ``ITEM_AS_OF`` moment, and co-visitation scores per (user, ``AS_OF``)
    from the table as of the row's item moment (under :data:`COVISIT_TABLE`)."""
    events, pairs = log.events.lazy(), log.covisit_pairs(config)
    parts: dict[str, list[pl.DataFrame]] = {}
    for (moment,), group in frame.group_by(ITEM_AS_OF):
        assert isinstance(moment, int)
        past = _as_of(events, moment)
        group_items = group[ITEM_ID].unique().implode()
        shared = log.shared_item_state(moment, items, registry, config)
        plans: dict[str, pl.LazyFrame] = {}
        for view in registry.views.values():
            if view.source == "covisit" or _is_user_side(view):
                continue
            scope, catalog = past, items.lazy()
            if set(view.entity.keys) == {ITEM_ID}:
                scope = past.filter(pl.col(ITEM_ID).is_in(group_items))
                catalog = catalog.filter(pl.col(ITEM_ID).is_in(group_items))
            plan = view_state(view, scope, catalog) if shared is None else shared[view.name].lazy()
            plans[view.name] = plan.with_columns(pl.lit(moment, pl.Int64).alias(ITEM_AS_OF))
        users_then = group.select(USER_ID, AS_OF).unique().lazy()
        group_history = history.lazy().join(users_then, on=[USER_ID, AS_OF], how="semi")
        sources = group_history.select(ITEM_ID).collect().to_series()
        if shared is None:
            table = pairs.table(moment, sources=sources)
        else:  # a table's rows per item do not depend on which other items it holds
            table = shared[COVISIT_TABLE].filter(pl.col(ITEM_ID).is_in(sources.implode()))
        plans[COVISIT_TABLE] = covisit_scores(group_history, table.lazy(), per=(USER_ID, AS_OF))
        for name, state in zip(plans, pl.collect_all(list(plans.values())), strict=True):
            parts.setdefault(name, []).append(state)
    return {name: pl.concat(states) for name, states in parts.items()}


def write_materialized(
    frames: dict[str, pl.DataFrame], out_dir: str | Path, as_of: int | None = None
) -> Path:
    """Write each frame as ``<name>.parquet`` plus a manifest; the folder appears whole or not at all."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, frame in frames.items():
            atomic_write_parquet(frame, tmp / f"{name}.parquet")
        manifest = {"as_of": as_of, "frames": {name: frame.height for name, frame in frames.items()}}
        atomic_write_json(tmp / MANIFEST, manifest)
        if out.exists():
            trash = out.parent / f".{out.name}.replaced"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_materialized(folder: str | Path) -> dict[str, pl.DataFrame]:
    """Frames written by :func:`write_materialized`; a missing or unreadable file is an error naming it."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        names = list(manifest["frames"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FeatureInputError(f"{manifest_path}: not a materialized feature folder ({error})") from None
    frames = {}
    for name in names:
        path = folder / f"{name}.parquet"
        try:
            frames[name] = pl.read_parquet(path)
        except Exception as error:  # polars raises several unrelated types for unreadable files
            raise FeatureInputError(f"{path}: unreadable materialized frame ({error})") from None
    return frames


def materialized_as_of(folder: str | Path) -> int | None:
    """The ``as_of`` recorded by :func:`write_materialized`."""
    value = json.loads((Path(folder) / MANIFEST).read_text()).get("as_of")
    return None if value is None else int(value)


def check_frames(frames: dict[str, pl.DataFrame], registry: Registry, config: FeaturesConfig) -> None:
    """Every frame :func:`assemble` needs is there with the expected columns, else an error naming them."""
    expected = {
        name: state_schema(view, config) for name, view in registry.views.items() if view.source != "covisit"
    }
    expected[HISTORY] = HISTORY_SCHEMA
    expected[COVISIT_TABLE] = COVISIT_SCHEMA
    for name, schema in expected.items():
        if name not in frames:
            raise FeatureDefinitionError(f"materialized frames lack view {name!r} (have {', '.join(frames)})")
        missing = [column for column in schema if column not in frames[name].columns]
        if missing:
            raise FeatureDefinitionError(f"materialized view {name!r} lacks columns {', '.join(missing)}")


def explain_features(
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    user_id: str,
    item_id: str | None,
    as_of: int,
    config: FeaturesConfig,
) -> list[tuple[str, str, float, str]]:
    """``(view, feature, value, description)`` for one user (and item) at ``as_of``, for people to read.

    Without an item only the user's own features are listed.
    """
    registry = build_registry(config)
    rows = pl.DataFrame({USER_ID: [user_id], ITEM_ID: [item_id or ""], TS: [as_of]})
    values = training_frame(rows, interactions, items, config).row(0, named=True)
    return [
        (view.name, feature.name, float(values[feature.name]), feature.description)
        for view in registry.views.values()
        if item_id is not None or view.entity.keys == (USER_ID,)
        for feature in view.features
    ]
