"""Read-outs: how a feature's value is read from joined state at ``NOW``, declared once as a small
expression and evaluated two ways: as a polars expression (offline and
:func:`feature_store.offline.assemble`) and on numpy arrays (the online fast path, where polars'
~100 µs per expression on a one-user frame is more than a request can spend).

Both evaluators give the same bits because they share one meaning, not because one is translated
from the other:

- every column is read as Float64; a missing value is null in polars and NaN in numpy, and a NaN
  counts as missing too (a feature's ``fill`` replaces both);
- ``+ - * /`` are IEEE float64 in both; ``number ** x`` (a positive base) is the C library's
  ``pow`` in both (numpy's vectorized power differs from it in the last bit, so numpy calls it
  per element);
- a comparison is 1.0 or 0.0, and missing when either side is missing or NaN (polars orders NaN
  above every number, IEEE does not; declaring "NaN is missing" removes the difference).

Build read-outs with :func:`col`, numbers, the operators and :func:`days_between`; a new node type
implements both :meth:`ReadOut.polars` and :meth:`ReadOut.numpy` next to each other.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

from feature_store.columns import DAY

Values = np.ndarray | float
"""A read-out's numpy value: float64 array (NaN: missing) or one float for a constant."""


class ReadOut(ABC):
    """A Float64 value per candidate row, computed from state columns (and ``NOW``)."""

    @abstractmethod
    def polars(self) -> pl.Expr:
        """The value as a Float64 polars expression (null: missing)."""

    @abstractmethod
    def numpy(self, columns: Mapping[str, np.ndarray]) -> Values:
        """The value from float64 column arrays (NaN: missing)."""

    @abstractmethod
    def columns(self) -> frozenset[str]:
        """The state columns it reads."""

    def __add__(self, other: ReadOut | float) -> ReadOut:
        return Arithmetic("+", self, _operand(other))

    def __radd__(self, other: float) -> ReadOut:
        return Arithmetic("+", _operand(other), self)

    def __sub__(self, other: ReadOut | float) -> ReadOut:
        return Arithmetic("-", self, _operand(other))

    def __rsub__(self, other: float) -> ReadOut:
        return Arithmetic("-", _operand(other), self)

    def __mul__(self, other: ReadOut | float) -> ReadOut:
        return Arithmetic("*", self, _operand(other))

    def __rmul__(self, other: float) -> ReadOut:
        return Arithmetic("*", _operand(other), self)

    def __truediv__(self, other: ReadOut | float) -> ReadOut:
        return Arithmetic("/", self, _operand(other))

    def __rtruediv__(self, other: float) -> ReadOut:
        return Arithmetic("/", _operand(other), self)

    def __rpow__(self, other: float) -> ReadOut:
        """``base ** x`` for a positive finite number ``base`` (decay): polars' general power
        special-cases some exponents (0.5 is a square root), which has no exact numpy twin."""
        base = _operand(other)
        assert isinstance(base, Constant)
        if not 0 < base.value < math.inf:
            raise ValueError(f"a read-out power needs a positive finite base, not {other!r}")
        return Arithmetic("**", base, self)

    def __gt__(self, other: ReadOut | float) -> ReadOut:
        return Comparison(">", self, _operand(other))

    def __ge__(self, other: ReadOut | float) -> ReadOut:
        return Comparison(">=", self, _operand(other))

    def __lt__(self, other: ReadOut | float) -> ReadOut:
        return Comparison("<", self, _operand(other))

    def __le__(self, other: ReadOut | float) -> ReadOut:
        return Comparison("<=", self, _operand(other))


def _operand(value: ReadOut | float) -> ReadOut:
    if isinstance(value, ReadOut):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"read-outs combine with numbers and read-outs, not {value!r}")
    return Constant(float(value))


@dataclass(frozen=True, eq=False)
class Column(ReadOut):
    name: str

    def polars(self) -> pl.Expr:
        return pl.col(self.name).cast(pl.Float64)

    def numpy(self, columns: Mapping[str, np.ndarray]) -> Values:
        return columns[self.name]

    def columns(self) -> frozenset[str]:
        return frozenset((self.name,))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Constant(ReadOut):
    """A number (never NaN: a constant is never missing)."""

    value: float

    def __post_init__(self) -> None:
        if math.isnan(self.value):
            raise ValueError("a read-out constant cannot be NaN (NaN means missing)")

    def polars(self) -> pl.Expr:
        return pl.lit(self.value, pl.Float64)

    def numpy(self, columns: Mapping[str, np.ndarray]) -> Values:
        return self.value

    def columns(self) -> frozenset[str]:
        return frozenset()

    def __str__(self) -> str:
        return repr(self.value)


def _libm_pow(base: float, exponent: float) -> float:
    """The C library's pow of a positive base, as polars computes it (inf where Python raises)."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf


def _missing_absorbs(value: pl.Expr, left: ReadOut, right: ReadOut) -> pl.Expr:
    """``value``, null where a (non-constant) side is NaN: for operations that IEEE lets a NaN
    operand escape (``pow(nan, 0) == 1``, ``nan > 1`` is a number), which would set a missing
    value apart from a null one."""
    known = [node.polars().is_not_nan() for node in (left, right) if not isinstance(node, Constant)]
    return pl.when(pl.all_horizontal(known)).then(value) if known else value


def _either_nan(left: Values, right: Values) -> np.ndarray:
    return np.isnan(np.asarray(left, np.float64)) | np.isnan(np.asarray(right, np.float64))


def _power(base: Values, exponent: Values) -> Values:
    if isinstance(base, float) and isinstance(exponent, float):
        return _libm_pow(base, exponent)
    left, right = np.broadcast_arrays(np.asarray(base, np.float64), np.asarray(exponent, np.float64))
    return np.fromiter(map(_libm_pow, left.tolist(), right.tolist()), np.float64, left.size)


@dataclass(frozen=True, eq=False)
class Arithmetic(ReadOut):
    op: str
    left: ReadOut
    right: ReadOut

    POLARS: ClassVar[dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]]] = {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
        "/": operator.truediv,
        "**": pl.Expr.pow,
    }
    NUMPY: ClassVar[dict[str, Callable[[Values, Values], Values]]] = {
        "+": np.add,
        "-": np.subtract,
        "*": np.multiply,
        "/": np.true_divide,
    }

    def polars(self) -> pl.Expr:
        value = self.POLARS[self.op](self.left.polars(), self.right.polars())
        return _missing_absorbs(value, self.left, self.right) if self.op == "**" else value

    def numpy(self, columns: Mapping[str, np.ndarray]) -> Values:
        left, right = self.left.numpy(columns), self.right.numpy(columns)
        if self.op == "**":
            return np.where(_either_nan(left, right), np.nan, _power(left, right))
        if isinstance(left, float) and isinstance(right, float):
            left = np.float64(left)  # IEEE results (inf, nan) for constants too, not Python's errors
        with np.errstate(all="ignore"):
            return self.NUMPY[self.op](left, right)

    def columns(self) -> frozenset[str]:
        return self.left.columns() | self.right.columns()

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True, eq=False)
class Comparison(ReadOut):
    op: str
    left: ReadOut
    right: ReadOut

    TESTS: ClassVar[dict[str, Callable[[Any, Any], Any]]] = {
        ">": operator.gt,
        ">=": operator.ge,
        "<": operator.lt,
        "<=": operator.le,
    }

    def polars(self) -> pl.Expr:
        test = self.TESTS[self.op](self.left.polars(), self.right.polars())
        assert isinstance(test, pl.Expr)
        return _missing_absorbs(test.cast(pl.Float64), self.left, self.right)

    def numpy(self, columns: Mapping[str, np.ndarray]) -> Values:
        left = np.asarray(self.left.numpy(columns), np.float64)
        right = np.asarray(self.right.numpy(columns), np.float64)
        with np.errstate(invalid="ignore"):
            test = np.asarray(self.TESTS[self.op](left, right), np.float64)
        return np.where(_either_nan(left, right), np.nan, test)

    def columns(self) -> frozenset[str]:
        return self.left.columns() | self.right.columns()

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


def col(name: str) -> ReadOut:
    """A state column (or ``NOW``) as it is joined to the candidate row."""
    return Column(name)


def days_between(later: str, earlier: str) -> ReadOut:
    """Days from ``earlier`` to ``later`` (seconds columns).

    Multiplies by 1/DAY instead of dividing: polars turns division by a constant into a
    multiplication only for frames longer than one row, and the online path (often one
    row) must give the same bits as the offline one.
    """
    return (col(later) - col(earlier)) * (1.0 / DAY)
