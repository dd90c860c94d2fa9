"""Definitions as data: the registry refuses duplicates and dangling references, versions are stable."""

from __future__ import annotations

import pytest

from feature_store.aggregations import Aggregation, Count, DistinctCount, Mean, Sum, WindowCount
from feature_store.definitions import (
    ITEM,
    ITEM_ID,
    USER,
    Feature,
    FeatureDefinitionError,
    FeatureView,
    Registry,
    feature_columns,
)
from feature_store.read_out import col
from feature_store.repository import DEFAULT_FEATURE_SET, build_registry, default_feature_set
from recsys.config import FeaturesConfig


def view(name: str, feature: str, state: str = "n", reads: str | None = None) -> FeatureView:
    return FeatureView(
        name=name,
        entity=USER if name.startswith("u") else ITEM,
        aggregations=(Count(state),),
        features=(Feature(feature, col(reads or state), 0.0, "test"),),
    )


def test_duplicates_and_unknown_references_are_named() -> None:
    with pytest.raises(FeatureDefinitionError, match="duplicate feature view names: u1"):
        Registry([view("u1", "a", "x"), view("u1", "b", "y")])
    with pytest.raises(FeatureDefinitionError, match="duplicate feature names: a"):
        Registry([view("u1", "a", "x"), view("i1", "a", "y")])
    with pytest.raises(FeatureDefinitionError, match="duplicate state columns: x"):
        Registry([view("u1", "a", "x"), view("i1", "b", "x")])
    with pytest.raises(FeatureDefinitionError, match="feature 'b' reads unknown columns: typo"):
        Registry([view("u1", "a", "x"), view("i1", "b", "y", reads="typo")])
    registry = Registry([view("u1", "a", "x"), view("i1", "b", "y", reads="x")])  # cross-view reads are fine
    with pytest.raises(FeatureDefinitionError, match="unknown feature view 'u2'; known: u1, i1"):
        registry.view("u2")
    with pytest.raises(FeatureDefinitionError, match="unknown features c, d"):
        registry.feature_set("model", ["a", "c", "d"])
    with pytest.raises(FeatureDefinitionError, match="duplicate features a"):
        registry.feature_set("model", ["a", "a"])


def test_feature_set_versions_are_stable_and_follow_definitions() -> None:
    config = FeaturesConfig()
    assert default_feature_set(config).version == DEFAULT_FEATURE_SET.version
    assert feature_columns(DEFAULT_FEATURE_SET)[:4] == [
        "item_events_1d",
        "item_events_7d",
        "item_events_30d",
        "item_events_all",
    ]
    other_windows = default_feature_set(config.model_copy(update={"windows_days": [1, 7, 90]}))
    assert other_windows.version != DEFAULT_FEATURE_SET.version
    affinities = [name for name in DEFAULT_FEATURE_SET.features if name.startswith("user_category_affinity")]
    assert affinities == [
        "user_category_affinity_3d",
        "user_category_affinity_14d",
        "user_category_affinity_60d",
    ]
    other_half_lives = default_feature_set(
        config.model_copy(update={"affinity_half_lives_days": [60.0, 7.0]})
    )
    assert [name for name in other_half_lives.features if name.startswith("user_category_affinity")] == [
        "user_category_affinity_7d",
        "user_category_affinity_60d",
    ]
    assert other_half_lives.version != DEFAULT_FEATURE_SET.version
    assert build_registry(config).feature_set("x", ["ui_count"]).version != DEFAULT_FEATURE_SET.version


def test_views_live_events_update_must_fold_every_aggregation() -> None:
    def user_view(*aggregations: Aggregation) -> FeatureView:
        return FeatureView("u1", USER, (Count("n"), *aggregations), (Feature("a", col("n"), 0.0, "test"),))

    with pytest.raises(FeatureDefinitionError, match=r"'u1' is updated by live events but Mean\("):
        Registry([user_view(Mean("mean_rating", "rating"))])
    with pytest.raises(FeatureDefinitionError, match=r"distinct item_id live needs a live view keyed by"):
        Registry([user_view(DistinctCount("n_items", ITEM_ID))])
    with pytest.raises(FeatureDefinitionError, match=r"reads unknown event columns \['price'\]"):
        Registry([user_view(Sum("spent", "price"))])
    items = FeatureView("i1", ITEM, (Mean("m", "rating"),), (Feature("b", col("m"), 0.0, "test"),))
    assert not Registry([user_view(), items]).views["i1"].live  # push-only views may keep a mean


def test_the_version_follows_the_aggregations_a_feature_reads() -> None:
    def registry(days: int) -> Registry:
        window = FeatureView("u1", USER, (WindowCount("n", days),), (Feature("a", col("n"), 0.0, "test"),))
        return Registry([window])

    assert registry(7).feature_set("s").version == registry(7).feature_set("s").version
    assert registry(7).feature_set("s").version != registry(30).feature_set("s").version
