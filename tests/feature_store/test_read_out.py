"""Read-outs: the numpy evaluation (online fast path) gives the polars evaluation's bits, always."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from feature_store.columns import NOW
from feature_store.definitions import COVISIT_STATE, Feature
from feature_store.offline import state_schema
from feature_store.read_out import Constant, ReadOut, col, days_between
from feature_store.repository import build_registry
from recsys.config import FeaturesConfig

CONFIG = FeaturesConfig()
REGISTRY = build_registry(CONFIG)
SCHEMA: dict[str, pl.DataType] = {
    name: dtype
    for view in REGISTRY.views.values()
    if view.source != "covisit"
    for name, dtype in state_schema(view, CONFIG).items()
    if dtype.is_numeric()
}
SCHEMA.update({COVISIT_STATE[0]: pl.Float64(), NOW: pl.Int64(), "a": pl.Float64(), "b": pl.Float64()})
MOMENT = 1_700_000_000
FLOATS = [None, math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 0.5, -2.5, 1e-9, 3.25, 1e300, float(MOMENT)]
INTS = [None, 0, 1, 2, 7, 30, MOMENT, MOMENT - 1, MOMENT - 3_600, MOMENT - 40 * 86_400, MOMENT + 86_400]
EXTRA: list[ReadOut] = [
    col("a") - col("b"),
    2.0 - col("a") / col("b"),
    1.0 / col("a"),
    0.5 ** col("a"),
    2.0 ** (col("a") * col("b")),
    col("a") > col("b"),
    col("a") >= 0.5,
    col("a") < col("b") * 3,
    col("a") <= col("b"),
    (col("a") > 0) * col("b") + (col("a") <= 0),
    days_between(NOW, "a"),
    Constant(1.0) / 0.0 + 2.0 ** Constant(0.5),
    (col("a") - 1.0) * (1 / 3.0),
]


def _features() -> list[Feature]:
    extra = [Feature(f"extra_{i}", read, -1.0, "test") for i, read in enumerate(EXTRA)]
    return [*REGISTRY.features.values(), *extra]


def _column(dtype: pl.DataType) -> st.SearchStrategy[list[float | int | None]]:
    pool = (
        FLOATS if dtype.is_float() else [v for v in INTS if v is None or v >= 0 or dtype.is_signed_integer()]
    )
    return st.lists(st.sampled_from(pool), min_size=12, max_size=12)


@settings(
    max_examples=200, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate)
)
@given(st.fixed_dictionaries({name: _column(dtype) for name, dtype in SCHEMA.items()}))
def test_numpy_read_out_equals_polars_bit_for_bit(values: dict[str, list[float | int | None]]) -> None:
    frame = pl.DataFrame(
        [pl.Series(name, values[name], dtype=dtype, strict=False) for name, dtype in SCHEMA.items()]
    )
    columns = {
        name: np.asarray(frame[name].cast(pl.Float64).fill_null(math.nan).to_numpy(), np.float64)
        for name in frame.columns
    }
    features = _features()
    expected = frame.select(feature.polars() for feature in features)
    for feature in features:
        got = feature.numpy(columns, frame.height)
        np.testing.assert_array_equal(
            got, expected[feature.name].to_numpy(), err_msg=f"{feature.name}: {feature.read}"
        )
        assert np.array_equal(np.signbit(got), np.signbit(expected[feature.name].to_numpy())), feature.name


def test_read_outs_name_what_they_read_and_refuse_other_operands() -> None:
    affinity = REGISTRY.features["user_category_affinity_14d"].read
    assert affinity.columns() == {
        "uc_decay_sum_14d",
        "uc_decay_ref_ts_14d",
        "user_decay_sum_14d",
        "user_decay_ref_ts_14d",
        NOW,
    }
    assert str(col("a") / col("b") > 1) == "((a / b) > 1.0)"
    with pytest.raises(TypeError, match="not 'x'"):
        col("a") + "x"  # type: ignore[operator]
    with pytest.raises(TypeError):
        col("a") ** 2  # type: ignore[operator]
    with pytest.raises(ValueError, match="positive finite base"):
        (-2.0) ** col("a")
    with pytest.raises(ValueError, match="NaN means missing"):
        col("a") * math.nan
