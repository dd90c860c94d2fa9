"""Aggregations: one part of a view's state, declared once, giving both its polars aggregation over
past events (offline, point-in-time) and its fold of one live event onto stored state (online).

A state row exists only for an entity with at least one event, so :meth:`Aggregation.start` (the
state before any event) followed by :meth:`Aggregation.fold` of one event equals the polars
aggregation over that one event; folding further events keeps the state equal to aggregating them
all, with two documented exceptions: a live event stays inside every time window until the next
push (:class:`WindowCount`), and a decayed sum refers to the latest event instead of ``as_of``
(:class:`DecayedSum`: the same value once read at ``NOW``, up to rounding).

Some aggregations cannot be folded from their own state (a mean without its count, a catalog
fact): they serve push-only views, and the registry refuses them in a view live events update.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from feature_store.columns import AGE, AS_OF, DAY, NOW, TS
from feature_store.read_out import ReadOut, col, days_between

Event = Mapping[str, Any]
"""One live event's :data:`~feature_store.columns.EVENT_COLUMNS` (None: no value)."""
IsNew = Callable[[str], bool]
"""Whether the event's value of a column is new for this entity (see :class:`DistinctCount`)."""


def deterministic_sum(values: pl.Expr) -> pl.Expr:
    """A float sum whose bits do not depend on row order or on how polars partitions groups.

    Summing the sorted values one by one (``cum_sum().last()``; a plain ``sort().sum()`` is
    optimized back to ``sum()``) makes the offline state for a subset of users identical to
    the full materialization that is pushed online.
    """
    return values.sort().cum_sum().last()


class Aggregation(ABC):
    """One or more state columns of a view, computed offline and folded online."""

    foldable: ClassVar[bool] = True
    """False: the state cannot be moved by one event (the aggregation serves push-only views)."""

    @property
    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """The state columns it owns."""

    @abstractmethod
    def polars(self) -> list[pl.Expr]:
        """Its aggregation expressions, one per state column, over one entity's past events (which
        carry ``AGE`` and ``AS_OF`` besides the event columns)."""

    def reads(self) -> tuple[str, ...]:
        """The source columns it reads."""
        return ()

    def start(self, event: Event) -> dict[str, Any]:
        """The state before the entity's first event (``event``)."""
        raise TypeError(f"{self!r} cannot be folded")

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        """Move ``state`` by one live event (at or after the state's moment)."""
        raise TypeError(f"{self!r} cannot be folded")


@dataclass(frozen=True)
class _OneColumn(Aggregation):
    name: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True)
class Count(_OneColumn):
    """The number of events."""

    def polars(self) -> list[pl.Expr]:
        return [pl.len().alias(self.name)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: 0}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        state[self.name] += 1


@dataclass(frozen=True)
class WindowCount(_OneColumn):
    """The number of events in the last ``days`` days. A live event counts at once; it leaves the
    window only at the next push (state holds no per-event times to expire it by)."""

    days: int

    def polars(self) -> list[pl.Expr]:
        return [(pl.col(AGE) <= self.days * DAY).sum().alias(self.name)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: 0}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        state[self.name] += 1


@dataclass(frozen=True)
class _OfColumn(_OneColumn):
    column: str

    def reads(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True)
class Sum(_OfColumn):
    """The sum of a Float64 event column (nulls left out; 0.0 when all are null)."""

    def polars(self) -> list[pl.Expr]:
        return [pl.col(self.column).sum().alias(self.name)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: 0.0}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        if event[self.column] is not None:
            state[self.name] += float(event[self.column])


@dataclass(frozen=True)
class CountNonNull(_OfColumn):
    """The number of events with a value in ``column``."""

    def polars(self) -> list[pl.Expr]:
        return [pl.col(self.column).count().alias(self.name)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: 0}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        if event[self.column] is not None:
            state[self.name] += 1


@dataclass(frozen=True)
class Max(_OfColumn):
    """The largest value of ``column`` (null when none has one)."""

    def polars(self) -> list[pl.Expr]:
        return [pl.col(self.column).max().alias(self.name)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: None}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        value, held = event[self.column], state[self.name]
        if value is not None:
            state[self.name] = value if held is None else max(held, value)


@dataclass(frozen=True)
class Min(_OfColumn):
    """The smallest value of ``column`` (null when none has one)."""

    def polars(self) -> list[pl.Expr]:
        return [pl.col(self.column).min().alias(self.name)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: None}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        value, held = event[self.column], state[self.name]
        if value is not None:
            state[self.name] = value if held is None else min(held, value)


@dataclass(frozen=True)
class Mean(_OfColumn):
    """The mean of ``column``. Not foldable: a live view keeps :class:`Sum` and
    :class:`CountNonNull` instead and divides them in the read-out."""

    foldable: ClassVar[bool] = False

    def polars(self) -> list[pl.Expr]:
        return [pl.col(self.column).mean().alias(self.name)]


@dataclass(frozen=True)
class DistinctCount(_OfColumn):
    """The number of distinct non-null values of ``column``.

    Folded by one generic rule: the value is new for the entity exactly when the view keyed by the
    entity's keys plus ``column`` had no state for it before the event (the registry requires such
    a live view). ``user_n_categories`` is thus moved by the ``user_category`` view's state.
    """

    def polars(self) -> list[pl.Expr]:
        return [pl.col(self.column).drop_nulls().n_unique().alias(self.name)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: 0}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        if event[self.column] is not None and is_new(self.column):
            state[self.name] += 1


@dataclass(frozen=True)
class DecayedSum(Aggregation):
    """Each event weighs ``2 ** (-age / half_life)``; the sum is kept with the moment it refers to
    (``ref``: ``as_of`` offline, the latest event online), so :meth:`at_now` moves it to any later
    moment by one multiplication and a live event updates it exactly."""

    name: str
    ref: str
    half_life_days: float

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name, self.ref)

    def polars(self) -> list[pl.Expr]:
        weight = 2.0 ** (pl.col(AGE).cast(pl.Float64) * (-1.0 / DAY / self.half_life_days))
        return [deterministic_sum(weight).alias(self.name), pl.col(AS_OF).first().alias(self.ref)]

    def start(self, event: Event) -> dict[str, Any]:
        return {self.name: 0.0, self.ref: event[TS]}

    def fold(self, state: dict[str, Any], event: Event, is_new: IsNew) -> None:
        total, ref, ts = state[self.name], state[self.ref], event[TS]
        half_life_s = self.half_life_days * DAY
        if ts >= ref:
            state[self.name], state[self.ref] = total * math.pow(2.0, -(ts - ref) / half_life_s) + 1.0, ts
        else:
            state[self.name] = total + math.pow(2.0, -(ref - ts) / half_life_s)

    def at_now(self) -> ReadOut:
        """The sum moved forward to ``NOW``: the read-out of this state."""
        return col(self.name) * (2.0 ** (days_between(self.ref, NOW) * (1.0 / self.half_life_days)))


@dataclass(frozen=True)
class ListFirst(_OfColumn):
    """The first element of a list column, of the entity's first row (catalog facts; not foldable)."""

    foldable: ClassVar[bool] = False

    def polars(self) -> list[pl.Expr]:
        return [pl.col(self.column).list.first().first().alias(self.name)]
