"""The feature repository: every view of this project, built from :class:`recsys.config.FeaturesConfig`."""

from __future__ import annotations

from feature_store.covisit import covisit_view
from feature_store.definitions import FeatureSet, FeatureView, Registry
from feature_store.item_features import item_meta_view, item_view
from feature_store.user_features import user_view
from feature_store.user_item_features import user_category_view, user_item_view
from recsys.config import FeaturesConfig


def views(config: FeaturesConfig) -> list[FeatureView]:
    """Every view, in join order (item metadata first: other views join on the item's category).

    The one place a new view is listed; a new feature of an existing view needs no edit here.
    """
    return [
        item_meta_view(),
        item_view(config),
        user_view(config),
        user_item_view(),
        user_category_view(config),
        covisit_view(),
    ]


def build_registry(config: FeaturesConfig) -> Registry:
    """The registry of :func:`views`: what training, the online store and serving all read."""
    return Registry(views(config))


def default_feature_set(config: FeaturesConfig) -> FeatureSet:
    """Every feature, for the ranker; its ``version`` changes with windows or definitions."""
    return build_registry(config).feature_set("ranker_default")


DEFAULT_FEATURE_SET = default_feature_set(FeaturesConfig())
"""The default set under the default config (windows 1/7/30 days)."""
