"""Feature-store providers for the ranker: offline (event log, point-in-time) and online (store)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from feature_store.covisit import WEIGHT_UNIT
from feature_store.read_out import Column
from recsys.config import FeaturesConfig

ROW = "_row"
META_CHECK_S = 1.0
"""How often a request checks whether the store was pushed since (item state is then re-read)."""

if TYPE_CHECKING:
    from feature_store.definitions import Feature, FeatureView
    from feature_store.offline import EventLog
    from feature_store.online import OnlineStore


@dataclass
class OfflineBehaviour:
    """Features of (user, item, ts) rows computed from ``interactions`` strictly before each ts."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    config: FeaturesConfig

    def names(self) -> list[str]:
        from feature_store.definitions import feature_columns
        from feature_store.repository import default_feature_set

        return feature_columns(default_feature_set(self.config))

    def features(self, rows: pl.DataFrame) -> pl.DataFrame:
        from feature_store.offline import training_frame

        return training_frame(rows, self.event_log, self.items, self.config)

    @cached_property
    def event_log(self) -> EventLog:
        """The interactions prepared once: every batch (chunk) cuts the same log at its moments."""
        from feature_store.offline import EventLog

        return EventLog.of(self.interactions, self.items)


def _float_values(series: pl.Series) -> np.ndarray:
    """A state column as the read-outs' numpy evaluation takes it: float64, NaN where missing."""
    return np.asarray(series.cast(pl.Float64).fill_null(np.nan).to_numpy(), dtype=np.float64)


@dataclass(frozen=True)
class _ItemSide:
    """What the store holds per item, which only a push changes: item-view state and co-visitation rows."""

    as_of: str | None
    state: dict[str, np.ndarray]
    """Item-keyed views' numeric state columns (NaN: none), one row per catalog item plus a last
    all-missing row."""
    category_codes: np.ndarray
    """Each catalog item's category as an index into ``category_names`` (-1: none; last row: -1)."""
    category_names: list[str]
    covisit: dict[str, tuple[np.ndarray, np.ndarray]]
    """item_id -> (catalog indices of co-visited items, weights), the store's ``covisit_table`` rows."""


class OnlineBehaviour:
    """Features of (user, item, ts) rows read from the online store (``ts`` is the moment ``now``):
    the values of :func:`feature_store.online.get_online_features`, fast enough for a request.

    State is joined to the rows as :func:`feature_store.offline.assemble` joins it and each feature's
    read-out is evaluated on it by numpy (:meth:`feature_store.definitions.Feature.numpy`: polars
    costs ~100 µs per expression on a tiny frame, far more than a request can spend); the read-out
    is declared once and gives the same bits as polars. Item state and the co-visitation table change
    only with a push, so they are read once per push (the store's ``as_of``) and kept as arrays; a
    request reads the user's own state: user, user×item for the candidates, user×category for their
    categories, and the recent history (a handful of store reads).
    """

    def __init__(self, store: OnlineStore, items: pl.DataFrame, config: FeaturesConfig) -> None:
        from feature_store.definitions import COVISIT_STATE, ITEM, NOW, USER, USER_CATEGORY, USER_ITEM
        from feature_store.repository import default_feature_set

        self.store = store
        self.config = config
        self.feature_set = default_feature_set(config)
        self.definitions: list[Feature] = store.registry.resolve(self.feature_set)
        self.item_ids: list[str] = items["item_id"].cast(pl.String).to_list()
        self.item_index = {item_id: row for row, item_id in enumerate(self.item_ids)}
        views: dict[object, list[FeatureView]] = {}
        for view in store.registry.views.values():
            if view.source != "covisit":
                views.setdefault(view.entity, []).append(view)
        unsupported = sorted(str(entity) for entity in set(views) - {ITEM, USER, USER_ITEM, USER_CATEGORY})
        if unsupported:
            raise ValueError(f"online features: no reader for entities {unsupported}")
        if len(views.get(USER_ITEM, [])) > 1 or len(views.get(USER_CATEGORY, [])) > 1:
            raise ValueError("online features: at most one user×item and one user×category view")
        self.item_views, self.user_views = views.get(ITEM, []), views.get(USER, [])
        self.pair_views, self.category_views = views.get(USER_ITEM, []), views.get(USER_CATEGORY, [])
        self._now = NOW
        self._covisit_column = COVISIT_STATE[0]
        self._schema: dict[str, pl.DataType] = {
            name: dtype
            for view in store.registry.views.values()
            if view.source != "covisit"
            for name, dtype in store.schemas[view.name].items()
        }
        self._needed: set[str] = set().union(*(feature.read.columns() for feature in self.definitions))
        self._lock = threading.Lock()
        self._items: _ItemSide | None = None
        self._checked = 0.0
        self._item_side()  # at load: a store of other definitions is refused before the first request
        plain = [
            (i, feature.read.name, feature.fill)
            for i, feature in enumerate(self.definitions)
            if isinstance(feature.read, Column)
        ]
        self._plain = [i for i, _, _ in plain]
        self._plain_columns = [name for _, name, _ in plain]
        self._plain_fills = np.asarray([float(fill) for _, _, fill in plain])
        self._computed = [i for i in range(len(self.definitions)) if i not in set(self._plain)]

    def names(self) -> list[str]:
        from feature_store.definitions import feature_columns

        return feature_columns(self.feature_set)

    def pushed_as_of(self) -> str | None:
        """The store push whose item state is in use (changes when the store is pushed again)."""
        return self._item_side().as_of

    # -- item side, refreshed when the store was pushed ---------------------------------------
    def _item_side(self) -> _ItemSide:
        """The cached item side; re-read when the store's push (its ``as_of``) changed (checked at most
        every ``META_CHECK_S``)."""
        from feature_store.online import OnlineStoreError

        cached = self._items
        if cached is not None and time.monotonic() - self._checked < META_CHECK_S:
            return cached
        meta = self.store.read_meta()
        self._checked = time.monotonic()
        pushed = meta.get("definitions")
        if pushed is not None and pushed != self.store.definitions_version:
            raise OnlineStoreError(
                f"online store holds state of feature definitions {pushed}, "
                f"these are {self.store.definitions_version}: push a fresh materialization"
            )
        if cached is not None and cached.as_of == meta.get("as_of"):
            return cached
        with self._lock:
            if self._items is None or self._items.as_of != meta.get("as_of"):
                self._items = self._read_item_side(meta.get("as_of"))
            return self._items

    def _read_item_side(self, as_of: str | None) -> _ItemSide:
        from feature_store.offline import COVISIT_TABLE

        keys = [(item_id,) for item_id in self.item_ids]
        state: dict[str, np.ndarray] = {}
        categories: list[str | None] = [None] * (len(keys) + 1)
        category_column = self.category_views[0].entity.row_keys[1] if self.category_views else None
        for view in self.item_views:
            values = [value or {} for value in self.store.read_many(view.name, keys)] + [{}]
            for name in view.state_columns:
                column = pl.Series(name, [value.get(name) for value in values], dtype=self._schema[name])
                if name == category_column:
                    categories = column.to_list()
                elif column.dtype.is_numeric() or column.dtype == pl.Boolean:
                    state[name] = _float_values(column)
        names = sorted({category for category in categories if category is not None})
        code = {category: i for i, category in enumerate(names)}
        codes = np.asarray([-1 if c is None else code[c] for c in categories], dtype=np.int64)
        covisit: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for (item_id,), row in zip(keys, self.store.read_many(COVISIT_TABLE, keys), strict=True):
            if row is None:
                continue
            pairs = [
                (self.item_index[other], weight)
                for other, weight in zip(row["other_item_id"], row["weight"], strict=True)
                if other in self.item_index
            ]
            covisit[item_id] = (
                np.asarray([index for index, _ in pairs], dtype=np.int64),
                np.asarray([weight for _, weight in pairs], dtype=np.float64),
            )
        return _ItemSide(as_of, state, codes, names, covisit)

    # -- per request ------------------------------------------------------------------------
    def features(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` (user_id, item_id, ts) in the same order, plus one Float64 column per feature."""
        from feature_store.definitions import ITEM_ID, TS, USER_ID

        rows = rows.select(
            pl.col(USER_ID).cast(pl.String), pl.col(ITEM_ID).cast(pl.String), pl.col(TS).cast(pl.Int64)
        )
        unknown = len(self.item_ids)
        parts, order = [], []
        for (user_id, now), group in rows.with_row_index(ROW).group_by(USER_ID, TS, maintain_order=True):
            positions = np.asarray(
                [self.item_index.get(item_id, unknown) for item_id in group[ITEM_ID].to_list()],
                dtype=np.int64,
            )
            parts.append(self.user_features(str(user_id), int(now), positions))
            order.append(group[ROW].to_numpy())
        values = np.concatenate(parts) if parts else np.zeros((0, len(self.definitions)))
        if len(parts) > 1:
            values = values[np.argsort(np.concatenate(order), kind="stable")]
        return pl.concat([rows, pl.DataFrame(values, schema=self.names(), orient="row")], how="horizontal")

    def user_features(
        self, user_id: str, now: int, positions: np.ndarray, seen: np.ndarray | None = None
    ) -> np.ndarray:
        """Feature values [len(positions), features] of ``user_id`` × catalog rows ``positions``
        (``len(catalog)`` for an unknown item) at ``now``, in :meth:`names` order.

        ``seen``: catalog rows of every item the user has had (their complete history). User×item state
        exists only for those, so it is read only for candidates among them; without it, for all.
        """
        from feature_store.definitions import ITEM_ID
        from feature_store.offline import HISTORY

        item_side = self._item_side()
        n = len(positions)
        columns: dict[str, np.ndarray] = {self._now: np.full(n, float(now))}
        for name, values in item_side.state.items():
            if name in self._needed:
                columns[name] = values[positions]
        for view in self.user_views:
            (state,) = self.store.read_many(view.name, [(user_id,)])
            for name in view.state_columns:
                value = None if state is None else state.get(name)
                columns[name] = np.full(n, np.nan if value is None else float(value))
        for view in self.pair_views:
            had = positions < len(self.item_ids)
            if seen is not None:
                had &= np.isin(positions, seen)
            wanted = np.unique(positions[had])
            codes = np.full(n, -1, dtype=np.int64)
            codes[had] = np.searchsorted(wanted, positions[had])
            states = self.store.read_user_items(
                view.name, user_id, [self.item_ids[p] for p in wanted.tolist()]
            )
            self._scatter(columns, view, states, codes)
        for view in self.category_views:
            codes = item_side.category_codes[positions]
            wanted = np.unique(codes[codes >= 0])
            keys = [(user_id, item_side.category_names[c]) for c in wanted.tolist()]
            states = self.store.read_many(view.name, keys)
            self._scatter(columns, view, states, np.where(codes >= 0, np.searchsorted(wanted, codes), -1))
        (history,) = self.store.read_many(HISTORY, [(user_id,)])
        columns[self._covisit_column] = self._covisit((history or {}).get(ITEM_ID, []), positions, item_side)
        out = np.empty((n, len(self.definitions)), dtype=np.float64)
        if self._plain:  # features that read one column as it is: one array operation for all of them
            values = np.column_stack([columns[name] for name in self._plain_columns])
            out[:, self._plain] = np.where(np.isnan(values), self._plain_fills, values)
        for i in self._computed:
            out[:, i] = self.definitions[i].numpy(columns, n)
        return out

    def _scatter(
        self,
        columns: dict[str, np.ndarray],
        view: FeatureView,
        states: list[dict[str, Any] | None],
        codes: np.ndarray,
    ) -> None:
        """Columns of ``view``'s state per candidate: ``codes`` picks each candidate's state (-1: none)."""
        for name in view.state_columns:
            if name not in self._needed:
                continue
            found = [None if state is None else state.get(name) for state in states]
            values = np.asarray([np.nan if value is None else float(value) for value in found] + [np.nan])
            columns[name] = values[codes]

    def _covisit(self, history: list[str], positions: np.ndarray, item_side: _ItemSide) -> np.ndarray:
        """Co-visitation weight from the user's recent events to each candidate, summed (NaN: none)."""
        rows = [item_side.covisit[item] for item in history if item in item_side.covisit]
        if not rows:
            return np.full(len(positions), np.nan)
        size = len(self.item_ids) + 1
        others = np.concatenate([other for other, _ in rows])
        # integer units, as feature_store.covisit sums them: exact, whatever the order
        units = np.rint(np.concatenate([weight for _, weight in rows]) * WEIGHT_UNIT)
        totals = np.bincount(others, weights=units, minlength=size) / WEIGHT_UNIT
        hits = np.bincount(others, minlength=size)[positions] > 0
        return np.where(hits, totals[positions], np.nan)
