"""Assembling a :class:`~recsys.recommend.Recommender` from a run's artifacts.

A run holds two sets of models (see :mod:`recsys.pipeline`): the *evaluated* recipe, fitted on
data that ends before the evaluation window, and the *shipped* one, refitted on all data.
Which candidate-source fit (``models``), which encoder, embeddings and index (``evaluated``)
and which ranker make a recommender is the caller's choice; this module only puts them together.
"""

from __future__ import annotations

import json
from pathlib import Path

from recsys.artifacts import RunStore
from recsys.catalog import ItemCatalog
from recsys.config import Config, config_of_run
from recsys.ranking.behaviour import OfflineBehaviour
from recsys.ranking.features import ITEM_FEATURES, SEMANTIC_FEATURES, BehaviouralFeatures
from recsys.ranking.ranker import Ranker
from recsys.recommend import Recommender
from recsys.retrieval.blend import source_columns
from recsys.run_context import RunContext, read_events, read_items, read_vectors

SOURCE_FITS = ("fit", "eval", "ship_fit", "serving")
"""Candidate-source fits of a run (``retrieval/<name>/``): on ``fit`` (training the evaluated
ranker), ``train`` (evaluation), ``ship_fit`` (training the shipped ranker), all data (serving)."""


def ranker_sources(config: Config, ranker: Ranker) -> list[str]:
    """The candidate sources ``ranker`` was trained on: those it chose on its label window (trial
    sources that earned their place included), or ``retrieval.sources`` for rankers that did not record
    them (runs from before trial sources)."""
    chosen = ranker.info.get("sources")
    return list(config.retrieval.sources) if chosen is None else list(chosen)


def candidate_recommender(
    ctx: RunContext,
    models: str,
    ranker: Ranker | None = None,
    evaluated: bool = True,
    sources: list[str] | None = None,
) -> Recommender:
    """A recommender over this run's artifacts with offline (point-in-time) behaviour.

    ``models``: one of :data:`SOURCE_FITS`; ``evaluated``: the evaluated encoder, embeddings and
    index (else the shipped ones). ``sources``: the candidate sources to blend; default, the ranker's
    (:func:`ranker_sources`), or without a ranker every source the run fitted (to train one on).
    """
    from recsys.index import load_index
    from recsys.retrieval.factory import fitted_source_names, load_sources, user_vector_fn

    if models not in SOURCE_FITS:
        raise ValueError(f"unknown source fit {models!r}; one of {SOURCE_FITS}")
    folder = ctx.path("retrieval") / models
    if sources is None and ranker is not None:
        sources = ranker_sources(ctx.config, ranker)
    elif sources is None:  # a run from before trial sources has only retrieval.sources' folders
        configured = ctx.config.retrieval.sources
        fitted = fitted_source_names(ctx.config.retrieval)
        sources = [name for name in fitted if name in configured or (folder / name).exists()]
    items = read_items(ctx)
    catalog = ItemCatalog.from_items(items)
    vectors = read_vectors(ctx.artifact("embeddings", evaluated))
    encoder_dir = ctx.artifact("encoder", evaluated) / "model"
    user_vectors = user_vector_fn(ctx.config, vectors, items, encoder_dir)
    index = load_index(ctx.artifact("index", evaluated))
    loaded = load_sources(ctx.config, folder, catalog, index, user_vectors, vectors, names=sources)
    behaviour = OfflineBehaviour(read_events(ctx), items, ctx.config.features)
    return Recommender(ctx.config, catalog, items, vectors, loaded, behaviour, ranker, ctx.run_id)


def ranking_feature_names(
    config: Config, behaviour: BehaviouralFeatures, sources: list[str] | None = None
) -> list[str]:
    """The named feature set of a ranker over ``sources`` (default ``retrieval.sources``; recorded in
    the manifest)."""
    text = SEMANTIC_FEATURES if config.ranking.text_features else []
    names = config.retrieval.sources if sources is None else sources
    return [*source_columns(names), *text, *behaviour.names(), *ITEM_FEATURES]


def run_context_of(run_dir: Path) -> RunContext:
    """The context of a published run, with the config it was run with."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = config_of_run(manifest["config"])
    return RunContext(config, RunStore(run_dir.parent), run_dir.name, Path(manifest["data"]["source"]))


def evaluated_ranker(ctx: RunContext) -> Ranker:
    """The ranker the evaluation scored (the shipped one in runs that kept only one)."""
    return Ranker.load(ctx.artifact("ranker", evaluated=True))


def load_recommender(run_dir: Path, behaviour: BehaviouralFeatures | None = None) -> Recommender:
    """What a finished run ships: sources fitted on all data, the refreshed encoder, the shipped ranker."""
    ctx = run_context_of(run_dir)
    recommender = candidate_recommender(ctx, "serving", Ranker.load(run_dir / "ranker"), evaluated=False)
    if behaviour is not None:
        recommender.behaviour = behaviour
    return recommender
