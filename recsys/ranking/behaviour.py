"""Feature-store providers for the ranker: offline (event log, point-in-time) and online (store)."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from feature_store.covisit import WEIGHT_UNIT
from recsys.config import FeaturesConfig

ROW = "_row"
VERIFY_ROWS = 512
META_CHECK_S = 1.0
"""How often a request checks whether the store was pushed since (item state is then re-read)."""

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


# -- feature expressions in numpy ---------------------------------------------------------------
Values = tuple[np.ndarray, np.ndarray]
"""A column as (float64 values, validity): null is ``valid == False``, distinct from NaN."""
Evaluator = Callable[[Mapping[str, Values], int], Values]


class Unsupported(Exception):
    """An expression node the numpy evaluator does not implement (that feature stays on polars)."""


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_float():
        return "float"
    if dtype.is_unsigned_integer():
        return "uint"
    if dtype.is_integer():
        return "int"
    if dtype == pl.Boolean:
        return "bool"
    raise Unsupported(f"column dtype {dtype}")


def _literal(value: float, kind: str) -> tuple[Evaluator, str]:
    return (lambda columns, n: (np.full(n, float(value)), np.ones(n, dtype=bool))), kind


def _compile_node(node: dict[str, Any], kinds: Mapping[str, str]) -> tuple[Evaluator, str]:
    """One node of polars' serialized expression tree (``meta.serialize(format="json")``) as numpy."""
    [(tag, body)] = node.items()
    if tag == "Column":
        if body not in kinds:
            raise Unsupported(f"column {body}")
        return (lambda columns, n: columns[body]), kinds[body]
    if tag == "Literal":
        if "Dyn" in body and set(body["Dyn"]) <= {"Float", "Int"}:
            [(literal_kind, value)] = body["Dyn"].items()
            return _literal(value, "float" if literal_kind == "Float" else "int")
        if body == {"Scalar": {"Null": "Null"}}:
            return (lambda columns, n: (np.zeros(n), np.zeros(n, dtype=bool))), "null"
        raise Unsupported(f"literal {body}")
    if tag == "Cast":
        if body["dtype"] != {"Literal": "Float64"}:
            raise Unsupported(f"cast to {body['dtype']}")
        inner, _ = _compile_node(body["expr"], kinds)
        return inner, "float"
    if tag == "BinaryExpr":
        return _compile_binary(body, kinds)
    if tag == "Ternary":
        predicate, _ = _compile_node(body["predicate"], kinds)
        truthy, truthy_kind = _compile_node(body["truthy"], kinds)
        falsy, falsy_kind = _compile_node(body["falsy"], kinds)

        def ternary(columns: Mapping[str, Values], n: int) -> Values:
            (test, test_valid), (a, a_valid), (b, b_valid) = (
                predicate(columns, n),
                truthy(columns, n),
                falsy(columns, n),
            )
            take = test_valid & (test != 0)  # a null condition takes the "otherwise" branch
            return np.where(take, a, b), np.where(take, a_valid, b_valid)

        kinds_found = {truthy_kind, falsy_kind} - {"null"}
        return ternary, ("float" if "float" in kinds_found else next(iter(kinds_found), "null"))
    if tag == "Function":
        return _compile_function(body, kinds)
    raise Unsupported(tag)


def _compile_binary(body: dict[str, Any], kinds: Mapping[str, str]) -> tuple[Evaluator, str]:
    left, left_kind = _compile_node(body["left"], kinds)
    right, right_kind = _compile_node(body["right"], kinds)
    op = body["op"]
    numeric = {"int", "uint", "float", "null"}
    arithmetic: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "Plus": np.add,
        "Minus": np.subtract,
        "Multiply": np.multiply,
        "TrueDivide": np.true_divide,
    }
    comparisons: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "Gt": np.greater,
        "Lt": np.less,
        "GtEq": np.greater_equal,
        "LtEq": np.less_equal,
        "Eq": np.equal,
        "NotEq": np.not_equal,
    }
    if op in arithmetic and {left_kind, right_kind} <= numeric:
        if op == "Minus" and "uint" in (left_kind, right_kind):
            raise Unsupported("unsigned subtraction (wraps in polars)")
        function = arithmetic[op]
        integral = {left_kind, right_kind} <= {"int", "uint", "null"} and op != "TrueDivide"
        kind = "int" if integral else "float"
    elif op in comparisons and {left_kind, right_kind} <= {"int", "uint", "null"}:
        function, kind = comparisons[op], "bool"  # floats: polars orders NaN differently from IEEE
    elif op in ("And", "Or") and {left_kind, right_kind} <= {"bool", "null"}:
        return _kleene(left, right, op == "And"), "bool"
    else:
        raise Unsupported(f"{op} on {left_kind}, {right_kind}")

    def binary(columns: Mapping[str, Values], n: int) -> Values:
        (a, a_valid), (b, b_valid) = left(columns, n), right(columns, n)
        with np.errstate(all="ignore"):
            return function(a, b).astype(np.float64), a_valid & b_valid

    return binary, kind


def _kleene(left: Evaluator, right: Evaluator, conjunction: bool) -> Evaluator:
    """Three-valued AND / OR, as polars: ``null | true == true``, ``null & false == false``."""

    def logic(columns: Mapping[str, Values], n: int) -> Values:
        (a, a_valid), (b, b_valid) = left(columns, n), right(columns, n)
        a_true, b_true = a_valid & (a != 0), b_valid & (b != 0)
        a_false, b_false = a_valid & (a == 0), b_valid & (b == 0)
        if conjunction:
            true, false = a_true & b_true, a_false | b_false
        else:
            true, false = a_true | b_true, a_false & b_false
        return true.astype(np.float64), true | false

    return logic


def _compile_function(body: dict[str, Any], kinds: Mapping[str, str]) -> tuple[Evaluator, str]:
    inputs = [_compile_node(node, kinds) for node in body["input"]]
    function = body["function"]
    if function == "FillNull" and len(inputs) == 2:
        (value, value_kind), (fill, fill_kind) = inputs

        def fill_null(columns: Mapping[str, Values], n: int) -> Values:
            (a, a_valid), (b, b_valid) = value(columns, n), fill(columns, n)
            return np.where(a_valid, a, b), a_valid | b_valid

        both = {value_kind, fill_kind} - {"null"}
        return fill_null, ("float" if "float" in both else next(iter(both), "null"))
    if isinstance(function, dict) and "Boolean" in function and len(inputs) == 1:
        (value, value_kind), test = inputs[0], function["Boolean"]
        if test in ("IsNull", "IsNotNull"):
            null = test == "IsNull"
            return (lambda columns, n: _is_null(value(columns, n), null)), "bool"
        if test in ("IsNan", "IsNotNan") and value_kind in ("float", "int", "uint", "null"):
            nan = test == "IsNan"
            return (lambda columns, n: _is_nan(value(columns, n), nan)), "bool"
    if function == {"Pow": "Generic"} and len(inputs) == 2:
        (base, base_kind), (exponent, exponent_kind) = inputs
        if "float" not in (base_kind, exponent_kind):
            raise Unsupported("integer power")

        def power(columns: Mapping[str, Values], n: int) -> Values:
            (a, a_valid), (b, b_valid) = base(columns, n), exponent(columns, n)
            return np.fromiter(map(_libm_pow, a.tolist(), b.tolist()), np.float64, n), a_valid & b_valid

        return power, "float"
    raise Unsupported(f"function {function}")


def _libm_pow(base: float, exponent: float) -> float:
    """The C library's pow, as polars computes it (numpy's vectorized power differs in the last bit)."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return -math.inf if base < 0 and exponent % 2 == 1 else math.inf
    except ValueError:
        return math.nan


def _is_null(values: Values, null: bool) -> Values:
    found = ~values[1] if null else values[1].copy()
    return found.astype(np.float64), np.ones(len(found), dtype=bool)


def _is_nan(values: Values, nan: bool) -> Values:
    found = np.isnan(values[0])
    return (found if nan else ~found).astype(np.float64), values[1]


def compile_feature(feature: Feature, schema: Mapping[str, pl.DataType]) -> Evaluator | None:
    """The feature's read-out as :func:`feature_store.offline.assemble` evaluates it
    (``expr.cast(Float64).fill_nan(None).fill_null(fill)``) in numpy, or None where the expression
    uses something the evaluator does not implement."""
    try:
        kinds = {
            name: _kind(dtype) for name, dtype in schema.items() if name in feature.expr.meta.root_names()
        }
        inner, _ = _compile_node(
            json.loads(feature.expr.cast(pl.Float64).meta.serialize(format="json")), kinds
        )
    except (Unsupported, KeyError, ValueError, TypeError):
        return None
    fill = float(feature.fill)

    def read_out(columns: Mapping[str, Values], n: int) -> Values:
        values, valid = inner(columns, n)
        return np.where(valid & ~np.isnan(values), values, fill), np.ones(n, dtype=bool)

    return read_out


def _sample_frame(schema: Mapping[str, pl.DataType], rows: int, seed: int, now: int) -> pl.DataFrame:
    """Values a state column can hold (nulls, zeros, counts, moments around ``now``, fractions, NaN)."""
    rng = np.random.default_rng(seed)
    columns = []
    for name, dtype in schema.items():
        if dtype.is_float():
            pool: list[Any] = [
                None,
                0.0,
                1.0,
                0.5,
                3.25,
                1e-9,
                120.0,
                float("nan"),
                -2.5,
                float(now - 86_400),
            ]
        elif dtype.is_unsigned_integer():
            pool = [None, 0, 1, 2, 7, 30, 1000]
        else:
            pool = [None, 0, 1, -1, 5, now, now - 1, now - 3_600, now - 40 * 86_400, now + 86_400]
        picks = rng.integers(0, len(pool), rows)
        columns.append(pl.Series(name, [pool[i] for i in picks], dtype=dtype, strict=False))
    return pl.DataFrame(columns)


def as_values(series: pl.Series) -> Values:
    valid = series.is_not_null().to_numpy()
    values = series.cast(pl.Float64).fill_null(0.0).to_numpy()
    return np.asarray(values, dtype=np.float64), np.asarray(valid, dtype=bool)


@dataclass(frozen=True)
class _ItemSide:
    """What the store holds per item, which only a push changes: item-view state and co-visitation rows."""

    as_of: str | None
    state: dict[str, Values]
    """Item-keyed views' numeric state columns, one row per catalog item plus a last all-null row."""
    category_codes: np.ndarray
    """Each catalog item's category as an index into ``category_names`` (-1: none; last row: -1)."""
    category_names: list[str]
    covisit: dict[str, tuple[np.ndarray, np.ndarray]]
    """item_id -> (catalog indices of co-visited items, weights), the store's ``covisit_table`` rows."""


class OnlineBehaviour:
    """Features of (user, item, ts) rows read from the online store (``ts`` is the moment ``now``):
    the values of :func:`feature_store.online.get_online_features`, fast enough for a request.

    State is joined to the rows as :func:`feature_store.offline.assemble` joins it and each feature's
    expression is evaluated on it. Polars costs ~100 µs per expression on a tiny frame, far more than
    a request can spend, so each feature's expression is translated to numpy (:func:`compile_feature`)
    and checked against polars on sampled state at load: a feature whose translation is missing or
    differs in any bit is evaluated by polars instead. Item state and the co-visitation table change
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
        self._schema[self._covisit_column] = pl.Float64()
        self._schema[NOW] = pl.Int64()
        self._needed = set().union(*(feature.expr.meta.root_names() for feature in self.definitions))
        self._lock = threading.Lock()
        self._items: _ItemSide | None = None
        self._checked = 0.0
        side = self._item_side()
        self._compiled = self._compile(int(side.as_of or 0))
        self._plain = [
            i
            for i, (feature, evaluator) in enumerate(zip(self.definitions, self._compiled, strict=True))
            if evaluator is not None and feature.expr.meta.is_column()
        ]
        self._plain_set = set(self._plain)
        self._plain_columns = [self.definitions[i].expr.meta.output_name() for i in self._plain]
        self._plain_fills = np.asarray([float(self.definitions[i].fill) for i in self._plain])

    def names(self) -> list[str]:
        from feature_store.definitions import feature_columns

        return feature_columns(self.feature_set)

    def _compile(self, now: int) -> list[Evaluator | None]:
        """Numpy evaluators of the features, each kept only if it equals polars bit for bit on samples."""
        schema = {
            name: dtype for name, dtype in self._schema.items() if name in self._needed and name != self._now
        }
        frame = _sample_frame(schema, VERIFY_ROWS, seed=0, now=now)
        frame = frame.with_columns(pl.lit(now, pl.Int64).alias(self._now))
        columns = {name: as_values(frame[name]) for name in frame.columns}
        compiled: list[Evaluator | None] = []
        for feature in self.definitions:
            evaluator = compile_feature(feature, self._schema)
            if evaluator is not None:
                expected = self._polars(frame, [feature])[:, 0]
                values, _ = evaluator(columns, frame.height)
                if not np.array_equal(values, expected, equal_nan=True):
                    evaluator = None
            compiled.append(evaluator)
        return compiled

    def pushed_as_of(self) -> str | None:
        """The store push whose item state is in use (changes when the store is pushed again)."""
        return self._item_side().as_of

    @property
    def polars_features(self) -> list[str]:
        """Features evaluated by polars (their expression has no exact numpy translation)."""
        return [
            f.name for f, evaluator in zip(self.definitions, self._compiled, strict=True) if evaluator is None
        ]

    @staticmethod
    def _polars(frame: pl.DataFrame, features: list[Feature]) -> np.ndarray:
        values = frame.select(
            feature.expr.cast(pl.Float64).fill_nan(None).fill_null(feature.fill).alias(feature.name)
            for feature in features
        )
        return values.to_numpy().astype(np.float64).reshape(frame.height, len(features))

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
        state: dict[str, Values] = {}
        categories: list[str | None] = [None] * (len(keys) + 1)
        category_column = self.category_views[0].entity.row_keys[1] if self.category_views else None
        for view in self.item_views:
            values = [value or {} for value in self.store.read_many(view.name, keys)] + [{}]
            for name in view.state_columns:
                column = pl.Series(name, [value.get(name) for value in values], dtype=self._schema[name])
                if name == category_column:
                    categories = column.to_list()
                elif column.dtype.is_numeric() or column.dtype == pl.Boolean:
                    state[name] = as_values(column)
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
        ones = np.ones(n, dtype=bool)
        columns: dict[str, Values] = {self._now: (np.full(n, float(now)), ones)}
        for name, (values, valid) in item_side.state.items():
            if name in self._needed:
                columns[name] = (values[positions], valid[positions])
        for view in self.user_views:
            (state,) = self.store.read_many(view.name, [(user_id,)])
            for name in view.state_columns:
                value = None if state is None else state.get(name)
                columns[name] = (
                    np.full(n, 0.0 if value is None else float(value)),
                    np.full(n, value is not None),
                )
        for view in self.pair_views:
            had = positions < len(self.item_ids)
            if seen is not None:
                had &= np.isin(positions, seen)
            wanted = np.unique(positions[had])
            codes = np.full(n, -1, dtype=np.int64)
            codes[had] = np.searchsorted(wanted, positions[had])
            states = self._read_pairs(view.name, user_id, [self.item_ids[p] for p in wanted.tolist()])
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
            values = np.column_stack([columns[name][0] for name in self._plain_columns])
            valid = np.column_stack([columns[name][1] for name in self._plain_columns])
            out[:, self._plain] = np.where(valid & ~np.isnan(values), values, self._plain_fills)
        slow = []
        for i, evaluator in enumerate(self._compiled):
            if evaluator is None:
                slow.append(i)
            elif i not in self._plain_set:
                out[:, i] = evaluator(columns, n)[0]
        if slow:
            frame = pl.DataFrame(
                [
                    pl.Series(name, values).scatter(np.flatnonzero(~valid), None).cast(self._schema[name])
                    for name, (values, valid) in columns.items()
                ]
            )
            out[:, slow] = self._polars(frame, [self.definitions[i] for i in slow])
        return out

    def _scatter(
        self,
        columns: dict[str, Values],
        view: FeatureView,
        states: list[dict[str, Any] | None],
        codes: np.ndarray,
    ) -> None:
        """Columns of ``view``'s state per candidate: ``codes`` picks each candidate's state (-1: none)."""
        for name in view.state_columns:
            if name not in self._needed:
                continue
            found = [None if state is None else state.get(name) for state in states]
            values = np.asarray([0.0 if value is None else float(value) for value in found] + [0.0])
            valid = np.asarray([value is not None for value in found] + [False])
            columns[name] = (values[codes], valid[codes])

    def _read_pairs(self, view: str, user_id: str, item_ids: list[str]) -> list[dict[str, Any] | None]:
        """State of (user, item) for each item id (None: none).

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

    def _covisit(self, history: list[str], positions: np.ndarray, item_side: _ItemSide) -> Values:
        """Co-visitation weight from the user's recent events to each candidate, summed (null: none)."""
        rows = [item_side.covisit[item] for item in history if item in item_side.covisit]
        if not rows:
            return np.zeros(len(positions)), np.zeros(len(positions), dtype=bool)
        size = len(self.item_ids) + 1
        others = np.concatenate([other for other, _ in rows])
        # integer units, as feature_store.covisit sums them: exact, whatever the order
        units = np.rint(np.concatenate([weight for _, weight in rows]) * WEIGHT_UNIT)
        totals = np.bincount(others, weights=units, minlength=size) / WEIGHT_UNIT
        hits = np.bincount(others, minlength=size)[positions] > 0
        return np.where(hits, totals[positions], 0.0), hits
