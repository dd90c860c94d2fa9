"""History-based scorers behind one ``Scorer`` interface: popularity, co-visitation, next-item transitions
(markov), EASE, ItemKNN, ALS, text similarity."""

from __future__ import annotations

from recsys.models.als import ALSScorer
from recsys.models.base import NotFittedError, Scorer, history_matrix, interaction_matrix, load_scorer
from recsys.models.covisit import CovisitScorer
from recsys.models.ease import EASEScorer
from recsys.models.itemknn import ItemKNNScorer
from recsys.models.markov import MarkovScorer
from recsys.models.popularity import PopularityScorer
from recsys.models.text_similarity import TextSimilarityScorer

__all__ = [
    "ALSScorer",
    "CovisitScorer",
    "EASEScorer",
    "ItemKNNScorer",
    "MarkovScorer",
    "NotFittedError",
    "PopularityScorer",
    "Scorer",
    "TextSimilarityScorer",
    "history_matrix",
    "interaction_matrix",
    "load_scorer",
]
