"""Fit, save and load the configured candidate sources as one unit (a folder per source)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from recsys.artifacts import atomic_path
from recsys.catalog import ItemCatalog
from recsys.config import Config, RetrievalConfig
from recsys.embeddings import user_vectors_from_context, user_vectors_from_history
from recsys.index import ANNIndex
from recsys.models.als import ALSScorer
from recsys.models.base import load_scorer
from recsys.models.category import CategoryScorer, category_codes
from recsys.models.covisit import CovisitScorer
from recsys.models.ease import EASEScorer
from recsys.models.itemknn import ItemKNNScorer
from recsys.models.markov import MarkovScorer
from recsys.models.popularity import PopularityScorer
from recsys.retrieval.base import CandidateSource
from recsys.retrieval.scorer_source import ScorerSource
from recsys.retrieval.semantic import SemanticSource, UserVectors

KNOWN_SOURCES = (
    "semantic",
    "cold_text",
    "covisit",
    "markov",
    "popular",
    "ease",
    "als",
    "itemknn",
    "category",
)
COLD_ITEMS_FILE = "cold_items.npz"
LEGACY_COVISIT_FILE = "covisit.parquet"
"""Where runs written before co-visitation became a scorer kept its table."""


def _check(names: list[str], key: str = "retrieval.sources") -> None:
    unknown = sorted(set(names) - set(KNOWN_SOURCES))
    if unknown:
        raise ValueError(f"{key}: unknown source(s) {unknown}; known: {list(KNOWN_SOURCES)}")


def fitted_source_names(config: RetrievalConfig) -> list[str]:
    """Every source :func:`fit_sources` fits: ``sources``, then the trial sources not among them."""
    _check(config.sources)
    _check(config.trial_sources, "retrieval.trial_sources")
    return [*config.sources, *(name for name in config.trial_sources if name not in config.sources)]


def fit_sources(
    config: Config, events: pl.DataFrame, items: pl.DataFrame, catalog: ItemCatalog, out_dir: Path
) -> None:
    """Fit every history-independent model the sources need on ``events`` (``items``: the catalog's
    metadata, for the category source) and save it under ``out_dir``: ``retrieval.sources`` and
    ``retrieval.trial_sources``."""
    names = fitted_source_names(config.retrieval)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "cold_text" in names:
        counts = np.bincount(
            catalog.with_index(events.select("item_id"))["item_idx"].to_numpy(), minlength=len(catalog)
        )
        (out_dir / "cold_text").mkdir(exist_ok=True)
        with atomic_path(out_dir / "cold_text" / COLD_ITEMS_FILE) as tmp, tmp.open("wb") as handle:
            np.savez(handle, allow=np.flatnonzero(counts <= config.retrieval.cold_max_events))
    if "covisit" in names:
        CovisitScorer.from_config(config.features).fit(events, catalog).save(out_dir / "covisit")
    if "markov" in names:
        retrieval = config.retrieval
        markov = MarkovScorer(
            retrieval.markov_steps, retrieval.markov_recent_items, config.features.covisit_max_seconds
        )
        markov.fit(events, catalog).save(out_dir / "markov")
    if "popular" in names:
        PopularityScorer(days=config.retrieval.popular_days).fit(events, catalog).save(out_dir / "popular")
    if "ease" in names:
        scorer = EASEScorer(lambda_=config.retrieval.ease_lambda, max_items=config.retrieval.ease_max_items)
        scorer.fit(events, catalog).save(out_dir / "ease")
    if "als" in names:
        ALSScorer(threads=config.ranking.threads).fit(events, catalog).save(out_dir / "als")
    if "itemknn" in names:
        ItemKNNScorer().fit(events, catalog).save(out_dir / "itemknn")
    if "category" in names:
        category = CategoryScorer(
            category_codes(items, catalog),
            config.retrieval.category_half_life_days,
            config.retrieval.category_taste_half_life_events,
        )
        category.fit(events, catalog).save(out_dir / "category")


def user_vector_fn(
    config: Config, item_vectors: np.ndarray, items: pl.DataFrame, encoder_dir: Path
) -> UserVectors:
    """History mean of item vectors (fast, no model at serving), or the encoded user context."""
    if config.retrieval.user_vector == "history_mean":
        return partial(
            user_vectors_from_history,
            item_vectors,
            half_life_events=config.retrieval.history_half_life_events,
        )
    from recsys.encoder.model import load_encoder

    model = load_encoder(str(encoder_dir))
    return partial(
        user_vectors_from_context,
        model,
        items,
        encoder_config=config.encoder,
        embeddings_config=config.embeddings,
    )


def load_sources(
    config: Config,
    folder: Path,
    catalog: ItemCatalog,
    index: ANNIndex,
    user_vectors: UserVectors,
    item_vectors: np.ndarray | None = None,
    names: list[str] | None = None,
) -> list[CandidateSource]:
    """The sources ``names`` (default: ``retrieval.sources``), in that order, from a folder written by
    :func:`fit_sources`.

    ``item_vectors`` (the index's rows) make the text sources rescore what they find exactly, so a
    user alone gets what the same user gets in a batch (:class:`SemanticSource`).
    """
    names = config.retrieval.sources if names is None else names
    _check(names)
    exclude = config.retrieval.exclude_seen
    sources: list[CandidateSource] = []
    for name in names:
        if name == "semantic":
            sources.append(SemanticSource(index, user_vectors, exclude, item_vectors=item_vectors))
        elif name == "cold_text":
            with np.load(folder / "cold_text" / COLD_ITEMS_FILE, allow_pickle=False) as stored:
                allow = stored["allow"]
            sources.append(
                SemanticSource(
                    index, user_vectors, exclude, allow=allow, name=name, item_vectors=item_vectors
                )
            )
        elif name == "covisit" and (folder / LEGACY_COVISIT_FILE).exists():
            scorer = CovisitScorer.from_config(config.features)
            scorer.from_table(pl.read_parquet(folder / LEGACY_COVISIT_FILE), catalog)
            sources.append(ScorerSource(scorer, name=name, exclude_seen=exclude))
        else:
            sources.append(ScorerSource(load_scorer(folder / name), name=name, exclude_seen=exclude))
    return sources
