"""Features declared as data: entities, feature views, named feature sets and the registry.

A :class:`FeatureView` says *what* is kept per entity (``aggregations``: typed
:mod:`~feature_store.aggregations`, the view's "state", each computed by polars from past events
offline and folded by one live event online) and *how* each feature value is read from that state
at a moment ``now`` (``Feature.read``: a :mod:`~feature_store.read_out` expression over the
candidate row after every view's state is joined, ``NOW`` the moment, evaluated by polars offline
and by numpy online). Declaring both once is what lets the offline path (state as of each row's
ts), the online store (state pushed nightly, folded by live events) and the online fast path share
one definition: adding a feature is one declaration.

Aggregations of ``source="events"`` views see the past events (``ts < as_of``): the
:data:`~feature_store.columns.EVENT_COLUMNS` plus ``AGE`` (seconds before ``as_of``) and ``AS_OF``.
Events with a null key (no category, for a user×category view) take no part in a view.
``source="items"`` views aggregate the catalog instead; ``source="covisit"`` views are filled from
the user's history and the co-visitation table at read time.

Which views live events update follows from the entity: views of events keyed by the user (user,
user×item, user×category), whose state only that user's events move. Item views are push-only:
their state sums every user's events, so folding it live would make each request write the same
hot keys (popular items) under the store's lock, and the online fast path reads item state once
per push.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from feature_store.aggregations import Aggregation, DistinctCount
from feature_store.columns import (
    AGE,
    AS_OF,
    CATEGORY,
    DAY,
    EVENT_COLUMNS,
    ITEM_ID,
    NEVER_DAYS,
    NOW,
    TS,
    USER_ID,
)
from feature_store.read_out import ReadOut

__all__ = [
    "AGE",
    "AS_OF",
    "CATEGORY",
    "COVISIT_STATE",
    "DAY",
    "ENTITIES",
    "ITEM",
    "ITEM_ID",
    "NEVER_DAYS",
    "NOW",
    "TS",
    "USER",
    "USER_CATEGORY",
    "USER_ID",
    "USER_ITEM",
    "Entity",
    "Feature",
    "FeatureDefinitionError",
    "FeatureSet",
    "FeatureView",
    "Registry",
    "feature_columns",
]

Source = Literal["events", "items", "covisit"]


class FeatureDefinitionError(ValueError):
    """A definition or a feature set is inconsistent; the message names the offending names."""


@dataclass(frozen=True)
class Entity:
    """What a feature describes, and the columns that identify one."""

    name: str
    keys: tuple[str, ...]
    """Key columns in the view's state."""
    row_keys: tuple[str, ...]
    """The matching columns on a candidate row (after item metadata is joined)."""
    description: str = ""


USER = Entity("user", (USER_ID,), (USER_ID,), "one user")
ITEM = Entity("item", (ITEM_ID,), (ITEM_ID,), "one catalog item")
USER_ITEM = Entity("user_item", (USER_ID, ITEM_ID), (USER_ID, ITEM_ID), "a user and a candidate item")
USER_CATEGORY = Entity(
    "user_category",
    (USER_ID, CATEGORY),
    (USER_ID, "item_category"),
    "a user and the candidate's first category",
)
ENTITIES = {entity.name: entity for entity in (USER, ITEM, USER_ITEM, USER_CATEGORY)}


@dataclass(frozen=True)
class Feature:
    """One model input: a Float64 value read from joined state at ``NOW``."""

    name: str
    read: ReadOut
    fill: float
    """Value when the entity has no state (no past events), or the read-out is missing or NaN."""
    description: str

    def polars(self) -> pl.Expr:
        """The filled value as a polars expression named after the feature."""
        return self.read.polars().fill_nan(None).fill_null(self.fill).alias(self.name)

    def numpy(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """The filled values of ``n`` rows from float64 state columns (NaN: missing); the same bits
        as :meth:`polars`."""
        values = np.broadcast_to(np.asarray(self.read.numpy(columns), np.float64), (n,))
        return np.where(np.isnan(values), self.fill, values)


@dataclass(frozen=True)
class FeatureView:
    """State kept per entity (``aggregations``) and the features read from it: one declaration."""

    name: str
    entity: Entity
    aggregations: tuple[Aggregation, ...]
    features: tuple[Feature, ...]
    source: Source = "events"
    ttl_days: float | None = None
    """How long online state of this view stays valid without a refresh (None: the store's ttl)."""
    description: str = ""

    @property
    def state_columns(self) -> list[str]:
        return [column for aggregation in self.aggregations for column in aggregation.columns]

    @property
    def live(self) -> bool:
        """Whether live events fold into this view's state online (see the module docstring)."""
        return self.source == "events" and self.entity.keys[0] == USER_ID


@dataclass(frozen=True)
class FeatureSet:
    """A named list of features one model uses; ``version`` changes whenever a definition does."""

    name: str
    features: tuple[str, ...]
    definitions: tuple[Feature, ...] = field(default=(), compare=False, repr=False)
    state: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """The declarations of the aggregations the features read (part of the version)."""

    @property
    def version(self) -> str:
        """Stable hash of the feature names, fills, read-outs and the aggregations they read
        (first 12 hex digits)."""
        digest = hashlib.sha256(self.name.encode())
        by_name = {feature.name: feature for feature in self.definitions}
        for name in self.features:
            digest.update(b"\0" + name.encode())
            if name in by_name:
                digest.update(f"|{by_name[name].fill!r}|{by_name[name].read}".encode())
        for aggregation in self.state:
            digest.update(b"\0" + aggregation.encode())
        return digest.hexdigest()[:12]


def _keyed_by(view: FeatureView, column: str, views: Iterable[FeatureView]) -> str:
    keys = {*view.entity.keys, column}
    for other in views:
        if other.live and set(other.entity.keys) == keys:
            return other.name
    raise FeatureDefinitionError(
        f"view {view.name!r}: counting distinct {column} live needs a live view keyed by {sorted(keys)}"
    )


def _aggregation_problems(view: FeatureView, views: Sequence[FeatureView]) -> list[str]:
    """What keeps ``view``'s aggregations from being computed offline or folded online."""
    problems = []
    for aggregation in view.aggregations:
        unknown = [column for column in aggregation.reads() if column not in EVENT_COLUMNS]
        if view.source == "events" and unknown:
            problems.append(f"view {view.name!r}: {aggregation!r} reads unknown event columns {unknown}")
        if not view.live:
            continue
        if not aggregation.foldable:
            problems.append(f"view {view.name!r} is updated by live events but {aggregation!r} cannot be")
        if isinstance(aggregation, DistinctCount):
            try:
                _keyed_by(view, aggregation.column, views)
            except FeatureDefinitionError as error:
                problems.append(str(error))
    return problems


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    duplicated: list[str] = []
    for name in names:
        if name in seen and name not in duplicated:
            duplicated.append(name)
        seen.add(name)
    return duplicated


class Registry:
    """All views of one deployment; checks names are unique and references resolve."""

    def __init__(self, views: Sequence[FeatureView]) -> None:
        self.views: dict[str, FeatureView] = {}
        problems: list[str] = []
        if duplicated := _duplicates(view.name for view in views):
            problems.append(f"duplicate feature view names: {', '.join(duplicated)}")
        features = [feature for view in views for feature in view.features]
        if duplicated := _duplicates(feature.name for feature in features):
            problems.append(f"duplicate feature names: {', '.join(duplicated)}")
        state = [column for view in views for column in view.state_columns]
        if duplicated := _duplicates(state):
            problems.append(f"duplicate state columns: {', '.join(duplicated)}")
        readable = {
            *state,
            NOW,
            *(key for view in views for key in (*view.entity.keys, *view.entity.row_keys)),
        }
        readable |= {
            covisit_column for view in views if view.source == "covisit" for covisit_column in COVISIT_STATE
        }
        for view in views:
            if view.entity.name not in ENTITIES or ENTITIES[view.entity.name] != view.entity:
                problems.append(f"view {view.name!r}: unknown entity {view.entity.name!r}")
            for feature in view.features:
                unknown = sorted(feature.read.columns() - readable)
                if unknown:
                    problems.append(f"feature {feature.name!r} reads unknown columns: {', '.join(unknown)}")
            problems.extend(_aggregation_problems(view, views))
        if problems:
            raise FeatureDefinitionError("; ".join(problems))
        self.views = {view.name: view for view in views}
        self.features: dict[str, Feature] = {feature.name: feature for feature in features}
        self._state: dict[str, Aggregation] = {
            column: aggregation
            for view in views
            for aggregation in view.aggregations
            for column in aggregation.columns
        }

    def keyed_by(self, view: FeatureView, column: str) -> FeatureView:
        """The live view whose keys are ``view``'s plus ``column``: whether it had state for an
        event's key tells whether the event's ``column`` value is new for ``view``'s entity."""
        return self.views[_keyed_by(view, column, self.views.values())]

    def view(self, name: str) -> FeatureView:
        if name not in self.views:
            raise FeatureDefinitionError(f"unknown feature view {name!r}; known: {', '.join(self.views)}")
        return self.views[name]

    def feature_set(self, name: str, features: Sequence[str] | None = None) -> FeatureSet:
        """A feature set over ``features`` (default: all); unknown names are an error naming them."""
        names = tuple(self.features) if features is None else tuple(features)
        unknown = [feature for feature in names if feature not in self.features]
        if unknown:
            raise FeatureDefinitionError(
                f"feature set {name!r}: unknown features {', '.join(unknown)}; "
                f"known: {', '.join(self.features)}"
            )
        if duplicated := _duplicates(names):
            raise FeatureDefinitionError(f"feature set {name!r}: duplicate features {', '.join(duplicated)}")
        definitions = tuple(self.features[feature] for feature in names)
        read = {column for feature in definitions for column in feature.read.columns()}
        state = sorted({repr(self._state[column]) for column in read if column in self._state})
        return FeatureSet(name, names, definitions, tuple(state))

    def resolve(self, feature_set: FeatureSet) -> list[Feature]:
        """The definitions of a feature set's features, checked against this registry."""
        return list(self.feature_set(feature_set.name, feature_set.features).definitions)


COVISIT_STATE = ("covisit_weight_sum",)
"""Column that ``source="covisit"`` views provide at read time (sum of table weights over the history)."""


def feature_columns(feature_set: FeatureSet) -> list[str]:
    """The output columns a feature set adds to candidate rows, in order."""
    return list(feature_set.features)
