"""History-based scorers (popularity, EASE, ItemKNN, ALS, text similarity) behind one ``Scorer`` interface."""

from __future__ import annotations

from recsys.models.als import ALSScorer
from recsys.models.base import NotFittedError, Scorer, history_matrix, interaction_matrix, load_scorer
from recsys.models.ease import EASEScorer
from recsys.models.itemknn import ItemKNNScorer
from recsys.models.popularity import PopularityScorer
from recsys.models.text_similarity import TextSimilarityScorer

__all__ = [
    "ALSScorer",
    "EASEScorer",
    "ItemKNNScorer",
    "NotFittedError",
    "PopularityScorer",
    "Scorer",
    "TextSimilarityScorer",
    "history_matrix",
    "interaction_matrix",
    "load_scorer",
]
