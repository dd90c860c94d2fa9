"""Features declared as data: entities, feature views, named feature sets and the registry.

A :class:`FeatureView` says *what* is kept per entity (``aggregations``: polars expressions
over past events grouped by the entity's keys, the view's "state") and *how* each feature
value is read from that state at a moment ``now`` (``Feature.expr``, evaluated on the
candidate rows after every view's state is joined, with ``pl.col(NOW)`` the moment).
Keeping state and read-out apart is what lets the offline path (state as of each row's
ts) and the online path (state pushed nightly, updated by live events) share one
definition: both end in :func:`feature_store.offline.assemble`.

Aggregation expressions see the past events (``ts < as_of``) with these extra columns:
``AGE`` (seconds before ``as_of``), ``DECAY`` (``2 ** (-AGE / half_life)``), ``AS_OF`` and
``CATEGORY`` (the item's first category). ``source="items"`` views aggregate the catalog
instead; ``source="covisit"`` views are filled from the user's history and the
co-visitation table at read time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

DAY = 86_400
USER_ID = "user_id"
ITEM_ID = "item_id"
TS = "ts"
CATEGORY = "category"
AGE = "_age_s"
DECAY = "_decay"
AS_OF = "_as_of"
NOW = "_now"
"""Column holding the moment a feature is read at (the row's ts offline, ``now`` online)."""
NEVER_DAYS = 3650.0
"""Fill for every days-since feature when there is no such event: ten years, 'never'."""


def days_between(later: str, earlier: str) -> pl.Expr:
    """Days from ``earlier`` to ``later`` (seconds columns).

    Multiplies by 1/DAY instead of dividing: polars turns division by a constant into a
    multiplication only for frames longer than one row, and the online path (often one
    row) must give the same bits as the offline one.
    """
    return (pl.col(later) - pl.col(earlier)).cast(pl.Float64) * (1.0 / DAY)


def deterministic_sum(column: str) -> pl.Expr:
    """A float sum whose bits do not depend on row order or on how polars partitions groups.

    Summing the sorted values one by one (``cum_sum().last()``; a plain ``sort().sum()`` is
    optimized back to ``sum()``) makes the offline state for a subset of users identical to
    the full materialization that is pushed online.
    """
    return pl.col(column).sort().cum_sum().last()


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
    """One model input: a Float64 value computed from joined state at ``pl.col(NOW)``."""

    name: str
    expr: pl.Expr
    fill: float
    """Value when the entity has no state (no past events), or the expression is null/NaN."""
    description: str


@dataclass(frozen=True)
class FeatureView:
    name: str
    entity: Entity
    aggregations: tuple[pl.Expr, ...]
    features: tuple[Feature, ...]
    source: Source = "events"
    where: pl.Expr | None = None
    """Only source rows matching this take part (e.g. events whose item has a category)."""
    windows_days: tuple[int, ...] = ()
    ttl_days: float | None = None
    """How long online state of this view stays valid without a refresh (None: the store's ttl)."""
    description: str = ""

    @property
    def state_columns(self) -> list[str]:
        return [expr.meta.output_name() for expr in self.aggregations]


@dataclass(frozen=True)
class FeatureSet:
    """A named list of features one model uses; ``version`` changes whenever a definition does."""

    name: str
    features: tuple[str, ...]
    definitions: tuple[Feature, ...] = field(default=(), compare=False, repr=False)

    @property
    def version(self) -> str:
        """Stable hash of the feature names, fills and expressions (first 12 hex digits)."""
        digest = hashlib.sha256(self.name.encode())
        by_name = {feature.name: feature for feature in self.definitions}
        for name in self.features:
            digest.update(b"\0" + name.encode())
            if name in by_name:
                digest.update(f"|{by_name[name].fill!r}|{by_name[name].expr}".encode())
        return digest.hexdigest()[:12]


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
                unknown = sorted(set(feature.expr.meta.root_names()) - readable)
                if unknown:
                    problems.append(f"feature {feature.name!r} reads unknown columns: {', '.join(unknown)}")
        if problems:
            raise FeatureDefinitionError("; ".join(problems))
        self.views = {view.name: view for view in views}
        self.features: dict[str, Feature] = {feature.name: feature for feature in features}

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
        return FeatureSet(name, names, tuple(self.features[feature] for feature in names))

    def resolve(self, feature_set: FeatureSet) -> list[Feature]:
        """The definitions of a feature set's features, checked against this registry."""
        return list(self.feature_set(feature_set.name, feature_set.features).definitions)


COVISIT_STATE = ("covisit_weight_sum",)
"""Column that ``source="covisit"`` views provide at read time (sum of table weights over the history)."""


def feature_columns(feature_set: FeatureSet) -> list[str]:
    """The output columns a feature set adds to candidate rows, in order."""
    return list(feature_set.features)
