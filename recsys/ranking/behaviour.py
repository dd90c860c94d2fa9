"""Feature-store providers for the ranker: offline (event log, point-in-time) and online (store)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.config import FeaturesConfig

ROW = "_row"

if TYPE_CHECKING:
    from feature_store.definitions import Feature, FeatureView
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

        return training_frame(rows, self.interactions, self.items, self.config)


@dataclass(frozen=True)
class _ItemSide:
    """What the store holds per item, which only a push changes: item-view state and co-visitation rows."""

    as_of: str | None
    state: pl.DataFrame
    """Item-keyed views' state columns, one row per catalog item plus a last all-null row (unknown items)."""
    covisit: dict[str, tuple[np.ndarray, np.ndarray]]
    """item_id -> (catalog indices of co-visited items, weights), the store's ``covisit_table`` rows."""
    at_now: dict[int, np.ndarray] = field(default_factory=dict)
    """now -> [catalog items + 1, item features]: features reading item state alone, per moment."""


ITEM_GROUP, PAIR_GROUP, CATEGORY_GROUP, COVISIT_GROUP = "item", "pair", "category", "covisit"
SPARSE_GROUPS = (PAIR_GROUP, CATEGORY_GROUP, COVISIT_GROUP)
"""Per-candidate state that most candidates lack (a seen item, a liked category, a co-visited item)."""


class OnlineBehaviour:
    """Features of (user, item, ts) rows read from the online store (``ts`` is the moment ``now``):
    the values of :func:`feature_store.online.get_online_features`, fast enough for a request.

    State is joined to the rows as :func:`feature_store.offline.assemble` joins it and the same
    feature expressions are evaluated, so values equal the offline ones for the same moment.
    Polars costs ~50 µs per expression whatever the row count, so each feature is evaluated on as
    few rows, as rarely, as its inputs allow (a feature's inputs are its expression's columns):

    * item state alone (and ``now``): once per push and moment, for the whole catalog;
    * the user's state alone: one row, remembered per (now, user state);
    * one kind of per-candidate state (user×item, user×category or co-visitation) besides the
      user's: only on the candidates that have such state; the others get the value of a row
      without it (remembered with the user's row);
    * anything else: on every candidate.

    Item state and the co-visitation table change only with a push, so they are read once per
    push (the store's ``as_of``); a request reads the user's own state (a handful of reads).
    """

    USER_MEMO = 65_536
    MOMENTS = 8

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
        self._schema = {
            name: dtype
            for view in store.registry.views.values()
            if view.source != "covisit"
            for name, dtype in store.schemas[view.name].items()
        }
        self._schema[COVISIT_STATE[0]] = pl.Float64()
        self._schema[NOW] = pl.Int64()
        group_columns = {
            ITEM_GROUP: {column for view in self.item_views for column in view.state_columns},
            PAIR_GROUP: {column for view in self.pair_views for column in view.state_columns},
            CATEGORY_GROUP: {column for view in self.category_views for column in view.state_columns},
            COVISIT_GROUP: set(COVISIT_STATE),
        }
        self._user_columns = [column for view in self.user_views for column in view.state_columns]
        groups = [
            {
                group
                for group, columns in group_columns.items()
                if set(feature.expr.meta.root_names()) & columns
            }
            for feature in self.definitions
        ]
        self._per_item = [i for i, found in enumerate(groups) if found == {ITEM_GROUP}]
        self._constant = [i for i, found in enumerate(groups) if not found]
        self._sparse = {g: [i for i, found in enumerate(groups) if found == {g}] for g in SPARSE_GROUPS}
        self._dense = [i for i, found in enumerate(groups) if len(found) > 1]
        self._null_row = self._constant + [i for g in SPARSE_GROUPS for i in self._sparse[g]]
        dense_columns = set().union(
            *(feature.expr.meta.root_names() for feature in self._features(self._dense))
        )
        self._dense_columns = dense_columns
        self._now = NOW
        self._lock = threading.Lock()
        self._memo_lock = threading.Lock()
        self._items: _ItemSide | None = None
        self._memo: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._item_side()

    def names(self) -> list[str]:
        from feature_store.definitions import feature_columns

        return feature_columns(self.feature_set)

    def _features(self, which: list[int]) -> list[Feature]:
        return [self.definitions[i] for i in which]

    def _values(self, frame: pl.DataFrame, which: list[int]) -> np.ndarray:
        """The features ``which`` evaluated on ``frame`` (joined state) exactly as ``assemble`` does."""
        if not which or not frame.height:
            return np.zeros((frame.height, len(which)))
        values = frame.select(
            feature.expr.cast(pl.Float64).fill_nan(None).fill_null(feature.fill).alias(feature.name)
            for feature in self._features(which)
        )
        return values.to_numpy()

    def _column(self, name: str, values: list[Any]) -> pl.Series:
        return pl.Series(name, values, dtype=self._schema[name])

    # -- item side, refreshed when the store was pushed ---------------------------------------
    def _item_side(self) -> _ItemSide:
        """The cached item side; re-read when the store's push (its ``as_of``) changed."""
        from feature_store.online import OnlineStoreError

        meta = self.store.read_meta()
        pushed = meta.get("definitions")
        if pushed is not None and pushed != self.store.definitions_version:
            raise OnlineStoreError(
                f"online store holds state of feature definitions {pushed}, "
                f"these are {self.store.definitions_version}: push a fresh materialization"
            )
        cached = self._items
        if cached is not None and cached.as_of == meta.get("as_of"):
            return cached
        with self._lock:
            if self._items is None or self._items.as_of != meta.get("as_of"):
                self._items = self._read_item_side(meta.get("as_of"))
            return self._items

    def _read_item_side(self, as_of: str | None) -> _ItemSide:
        from feature_store.offline import COVISIT_TABLE

        keys = [(item_id,) for item_id in self.item_ids]
        columns: list[pl.Series] = []
        for view in self.item_views:
            values = [value or {} for value in self.store.read_many(view.name, keys)] + [{}]
            columns.extend(
                self._column(name, [value.get(name) for value in values]) for name in view.state_columns
            )
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
        return _ItemSide(as_of, pl.DataFrame(columns), covisit)

    def _item_values(self, item_side: _ItemSide, now: int) -> np.ndarray:
        """Features reading item state alone, for every catalog row at ``now`` (a few moments kept)."""
        values = item_side.at_now.get(now)
        if values is None:
            frame = item_side.state.with_columns(pl.lit(now, pl.Int64).alias(self._now))
            values = self._values(frame, self._per_item)
            with self._memo_lock:
                while len(item_side.at_now) >= self.MOMENTS:
                    item_side.at_now.pop(next(iter(item_side.at_now)))
                item_side.at_now[now] = values
        return values

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
            parts.append(self.user_features(str(user_id), int(now), positions))  # type: ignore[call-overload]
            order.append(group[ROW].to_numpy())
        values = np.concatenate(parts) if parts else np.zeros((0, len(self.definitions)))
        if len(parts) > 1:
            values = values[np.argsort(np.concatenate(order), kind="stable")]
        return pl.concat([rows, pl.DataFrame(values, schema=self.names(), orient="row")], how="horizontal")

    def user_features(self, user_id: str, now: int, positions: np.ndarray) -> np.ndarray:
        """Feature values [len(positions), features] of ``user_id`` × catalog rows ``positions``
        (``len(catalog)`` for an unknown item) at ``now``, in :meth:`names` order."""
        from feature_store.definitions import ITEM_ID, USER_ID
        from feature_store.offline import HISTORY

        item_side = self._item_side()
        n = len(positions)
        out = np.empty((n, len(self.definitions)), dtype=np.float64)
        out[:, self._per_item] = self._item_values(item_side, now)[positions]
        user: dict[str, Any] = {}
        for view in self.user_views:
            (state,) = self.store.read_many(view.name, [(user_id,)])
            user.update(state or {})
        user_values = tuple(user.get(name) for name in self._user_columns)
        out[:, self._null_row] = self._null_row_values(now, user_values)
        item_state = item_side.state[positions]
        # per-candidate state, only where a candidate has some: {column: values}, rows that have it
        sparse: dict[str, tuple[dict[str, list[Any]], np.ndarray]] = {}
        if self.pair_views:
            item_ids = [self.item_ids[p] if p < len(self.item_ids) else None for p in positions.tolist()]
            for view in self.pair_views:
                found = self._read_pairs(view.name, user_id, item_ids)
                sparse[PAIR_GROUP] = self._sparse_columns(view, found, (USER_ID, ITEM_ID))
        for view in self.category_views:
            categories = item_state[view.entity.row_keys[1]].to_list()
            distinct = sorted({category for category in categories if category is not None})
            states = dict(
                zip(distinct, self.store.read_many(view.name, [(user_id, c) for c in distinct]), strict=True)
            )
            found = [None if category is None else states.get(category) for category in categories]
            sparse[CATEGORY_GROUP] = self._sparse_columns(view, found, ())
        (history,) = self.store.read_many(HISTORY, [(user_id,)])
        covisit = self._covisit((history or {}).get(ITEM_ID, []), positions, item_side)
        present = np.flatnonzero(~np.isnan(covisit))
        sparse[COVISIT_GROUP] = ({"covisit_weight_sum": covisit[present].tolist()}, present)
        self._fill_sparse(out, sparse, now, user_values)
        if self._dense:
            frame = self._dense_frame(item_state, now, user_values, sparse, n)
            out[:, self._dense] = self._values(frame, self._dense)
        return out

    def _null_row_values(self, now: int, user_values: tuple[Any, ...]) -> np.ndarray:
        """Features reading only the user's state, and sparse ones on a candidate without such state."""
        key = (now, user_values)
        values = self._memo.get(key)
        if values is None:
            columns = [self._column(self._now, [now])]
            columns += [self._column(n, [v]) for n, v in zip(self._user_columns, user_values, strict=True)]
            wanted = set().union(*(f.expr.meta.root_names() for f in self._features(self._null_row)))
            columns += [
                self._column(name, [None]) for name in sorted(wanted - {self._now, *self._user_columns})
            ]
            values = self._values(pl.DataFrame(columns), self._null_row)[0]
            with self._memo_lock:
                self._memo[key] = values
                if len(self._memo) > self.USER_MEMO:
                    self._memo.popitem(last=False)
        return values

    def _sparse_columns(
        self, view: FeatureView, states: list[dict[str, Any] | None], keys: tuple[str, ...]
    ) -> tuple[dict[str, list[Any]], np.ndarray]:
        rows = np.asarray([row for row, state in enumerate(states) if state is not None], dtype=np.int64)
        kept = [state for state in states if state is not None]
        columns = {
            name: [state.get(name) for state in kept] for name in view.state_columns if name not in keys
        }
        return columns, rows

    def _fill_sparse(
        self,
        out: np.ndarray,
        sparse: dict[str, tuple[dict[str, list[Any]], np.ndarray]],
        now: int,
        user_values: tuple[Any, ...],
    ) -> None:
        """Evaluate each sparse group's features on the candidates that have such state (one select)."""
        groups = [g for g in SPARSE_GROUPS if self._sparse[g] and g in sparse and len(sparse[g][1])]
        if not groups:
            return
        sizes = [len(sparse[g][1]) for g in groups]
        total = sum(sizes)
        columns: dict[str, list[Any]] = {self._now: [now] * total}
        columns.update(
            {name: [value] * total for name, value in zip(self._user_columns, user_values, strict=True)}
        )
        offset = 0
        for group, size in zip(groups, sizes, strict=True):
            for name, values in sparse[group][0].items():
                columns.setdefault(name, [None] * total)[offset : offset + size] = values
            offset += size
        wanted = [i for g in groups for i in self._sparse[g]]
        needed = set().union(*(f.expr.meta.root_names() for f in self._features(wanted)))
        frame = pl.DataFrame(
            [self._column(name, columns.get(name, [None] * total)) for name in sorted(needed)]
        )
        values = self._values(frame, wanted)
        offset, first = 0, 0
        for group, size in zip(groups, sizes, strict=True):
            which = self._sparse[group]
            rows = sparse[group][1]
            out[np.ix_(rows, which)] = values[offset : offset + size, first : first + len(which)]
            offset, first = offset + size, first + len(which)

    def _dense_frame(
        self,
        item_state: pl.DataFrame,
        now: int,
        user_values: tuple[Any, ...],
        sparse: dict[str, tuple[dict[str, list[Any]], np.ndarray]],
        n: int,
    ) -> pl.DataFrame:
        """Every column the dense features read, one row per candidate."""
        wanted = self._dense_columns
        columns = [item_state[name] for name in item_state.columns if name in wanted]
        if self._now in wanted:
            columns.append(pl.Series(self._now, [now] * n, dtype=pl.Int64))
        user = dict(zip(self._user_columns, user_values, strict=True))
        columns += [self._column(name, [user[name]] * n) for name in self._user_columns if name in wanted]
        for values, rows in sparse.values():
            for name, found in values.items():
                if name in wanted:
                    full: list[Any] = [None] * n
                    for row, value in zip(rows.tolist(), found, strict=True):
                        full[row] = value
                    columns.append(self._column(name, full))
        return pl.DataFrame(columns)

    def _read_pairs(self, view: str, user_id: str, item_ids: list[str | None]) -> list[dict[str, Any] | None]:
        """State of (user, item) for each item id (None: none, or no item).

        Keys are encoded here and read with the store's batch read: ``read_many``'s per-key checks
        cost more than the read itself for hundreds of candidates, and catalog ids were checked at load.
        """
        from feature_store.definitions import FeatureDefinitionError
        from feature_store.online import KEY_SEPARATOR

        if not user_id or KEY_SEPARATOR in user_id:
            raise FeatureDefinitionError(f"view {view!r}: bad user_id {user_id!r}")
        wanted = [item for item in dict.fromkeys(item_ids) if item is not None]
        raw = self.store._read(view, [f"{user_id}{KEY_SEPARATOR}{item}" for item in wanted]) if wanted else []
        found = {
            item: json.loads(value) for item, value in zip(wanted, raw, strict=True) if value is not None
        }
        return [None if item is None else found.get(item) for item in item_ids]

    def _covisit(self, history: list[str], positions: np.ndarray, item_side: _ItemSide) -> np.ndarray:
        """Co-visitation weight from the user's recent events to each candidate, summed (NaN: none)."""
        rows = [item_side.covisit[item] for item in history if item in item_side.covisit]
        if not rows:
            return np.full(len(positions), np.nan)
        size = len(self.item_ids) + 1
        others = np.concatenate([other for other, _ in rows])
        totals = np.bincount(others, weights=np.concatenate([weight for _, weight in rows]), minlength=size)
        hits = np.bincount(others, minlength=size)[positions] > 0
        return np.where(hits, totals[positions], np.nan)
