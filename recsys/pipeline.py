"""The nightly pipeline: one idempotent function per stage, keyed by run id.

Each stage reads the outputs of earlier stages from the run's staging folder and writes
its own output folder atomically (``RunStore.stage_output``); a stage whose output exists
is skipped, so a killed run resumes where it stopped and a re-run of the same logical
date rewrites the same run. :func:`recsys.promotion.publish` then moves the finished run into
place behind the quality gate. The DAG and the CLI call exactly these functions.

**Evaluate the recipe, ship the recipe refitted.** One recipe (fine-tune the encoder, fit the
sources, train the ranker on a label window of candidates from sources fitted before it) runs
twice on different cuts of time:

* *evaluated* (``<stage>/evaluated/``): evaluation split ``train | test`` (``split`` config);
  inside ``train``, the label window ``fit | label`` (``ranking.label_share``), ``label`` split
  again in time into ``label_train | label_valid`` for early stopping. Encoder fine-tuned on
  ``fit``; sources fitted on ``fit`` for the ranker's candidates and on ``train`` for evaluation.
  The evaluation stage scores this recipe on ``test``.
* *shipped* (``<stage>/``): the same cut at the end of *all* data: ``ship_fit | ship_label``,
  so the shipped ranker's labels end at the data's last event; its candidates come from sources
  fitted on ``ship_fit`` and its semantic features from the evaluated encoder (which has not
  seen the label window). The shipped encoder is the evaluated one trained further on pairs
  from all events (``encoder.refresh_steps``); the sources that serve are fitted on all data.

Behavioural features are always computed as of the moment they describe (the user's first
target event snapped down to a grid, or just after the latest event for serving). Budgets are
in steps, never seconds, so the same data and config give the same run on any machine.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.assemble import candidate_recommender, ranking_feature_names
from recsys.catalog import Histories, ItemCatalog
from recsys.console import console
from recsys.data import load_dataset, per_user_split
from recsys.data.splits import global_split, time_at_share
from recsys.live_events import LIVE_EVENTS_FILE, add_live_events
from recsys.privacy import drop_forgotten
from recsys.promotion import publish
from recsys.ranking.ranker import Ranker
from recsys.ranking.training_set import train_ranker
from recsys.run_context import EVALUATED, RunContext, read_events, read_items, read_vectors
from recsys.shards import concat_parquet, drop_parts, run_part, run_shards, shard_bounds

STAGES = (
    "data",
    "split",
    "features",
    "encoder",
    "embeddings",
    "index",
    "retrieval",
    "ranker",
    "evaluation",
    "recommendations",
)
ENCODER_CHOICE = "encoder.json"
"""What encoded the catalog (backend, device, agreement with fp32 torch), beside its vectors."""
SPLIT_PARTS = (
    "train",
    "test",
    "fit",
    "label_train",
    "label_valid",
    "ship_fit",
    "ship_label_train",
    "ship_label_valid",
)


def _stage(name: str) -> Callable[[Callable[[RunContext, Path], None]], Callable[..., Path]]:
    """Make ``body(ctx, out)`` an idempotent, atomic, timed stage returning its output folder."""

    def wrap(body: Callable[[RunContext, Path], None]) -> Callable[..., Path]:
        def run(ctx: RunContext, force: bool = False) -> Path:
            done = ctx.store.stage_done(ctx.run_id, name)
            if done is not None and not force:
                return done
            started = time.perf_counter()
            console.print(f"[bold cyan]▶ {name}[/]")
            with ctx.store.stage_output(ctx.run_id, name) as out:
                body(ctx, out)
            ctx.timings[name] = round(time.perf_counter() - started, 2)
            console.print(f"  {name} done in {ctx.timings[name]:.1f}s")
            return ctx.path(name)

        run.__name__ = f"stage_{name}"
        run.__doc__ = body.__doc__
        return run

    return wrap


@_stage("data")
def validate(ctx: RunContext, out: Path) -> None:
    """Validate the input folder; clean tables to Parquet, bad rows to quarantine."""
    cfg = ctx.config.data
    dataset = load_dataset(
        ctx.data_dir,
        max_bad_share=cfg.max_bad_share,
        as_of=cfg.as_of,
        # outside the stage's temporary folder: the quarantine must outlive a failed validation
        quarantine_dir=ctx.store.quarantine_dir(ctx.run_id),
    )
    live = dataset.interactions.clear()
    if cfg.online_events:
        interactions, live = add_live_events(
            dataset.interactions, dataset.items, ctx.config.features, ctx.store
        )
        dataset = replace(dataset, interactions=interactions)
    # Forgotten users never come back, whatever the input still holds.
    dataset = replace(dataset, interactions=drop_forgotten(dataset.interactions, ctx.store.root))
    live = drop_forgotten(live, ctx.store.root)
    dataset.items.write_parquet(out / "items.parquet")
    dataset.interactions.write_parquet(out / "interactions.parquet")
    live.write_parquet(out / LIVE_EVENTS_FILE)
    start, end = dataset.time_range
    summary = {
        "stats": dataset.stats,
        "time_range": [start, end],
        "source": str(ctx.data_dir.resolve()),
        "live_events": live.height,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def split_by_protocol(
    events: pl.DataFrame, protocol: str, share: float, min_events: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Earlier | later part: each user's last ``share`` (per_user) or the last ``share`` of time (global)."""
    if protocol == "per_user":
        return per_user_split(events, test_share=share, min_events=min_events)
    return global_split(events, time_at_share(events, share))


@_stage("split")
def split(ctx: RunContext, out: Path) -> None:
    """Evaluation split, and the ranker's label windows inside train and all data (module docstring)."""
    cfg = ctx.config
    events = read_events(ctx)
    protocol, min_events = cfg.split.protocol, cfg.split.min_user_events
    train, test = split_by_protocol(events, protocol, cfg.split.test_share, min_events)
    parts = {"train": train, "test": test}
    # The ranker's label window: at the end of train (evaluated), at the end of all data (shipped).
    for prefix, before in (("", train), ("ship_", events)):
        fit, label = split_by_protocol(before, protocol, cfg.ranking.label_share, min_events)
        label_train, label_valid = split_by_protocol(label, protocol, 0.5, 2)
        parts |= {
            f"{prefix}fit": fit,
            f"{prefix}label_train": label_train,
            f"{prefix}label_valid": label_valid,
        }
    summary: dict[str, Any] = {"protocol": protocol}
    for name, frame in parts.items():
        frame.write_parquet(out / f"{name}.parquet")
        summary[name] = {
            "rows": frame.height,
            "users": frame["user_id"].n_unique(),
            "ts_min": frame["ts"].min(),
            "ts_max": frame["ts"].max(),
        }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")


@_stage("features")
def features(ctx: RunContext, out: Path) -> None:
    """Materialize every feature view as of just after the latest event (for serving and inspection)."""
    from feature_store.offline import materialize, write_materialized

    events = read_events(ctx)
    as_of = int(events["ts"].max()) + 1  # type: ignore[arg-type]
    write_materialized(materialize(events, read_items(ctx), as_of, ctx.config.features), out, as_of=as_of)


@_stage("encoder")
def encoder(ctx: RunContext, out: Path) -> None:
    """Fine-tune the encoder on ``fit`` (evaluated), then train it further on all events (shipped)."""
    from recsys.encoder.train import fine_tune

    cfg = ctx.config.encoder
    items, template = read_items(ctx), ctx.config.embeddings.template
    if not cfg.fine_tune:
        from recsys.encoder.model import load_encoder

        load_encoder(cfg.base_model).save_pretrained(str(out / EVALUATED / "model"))
        result: dict[str, Any] = {"evaluated": {"fine_tuned": False, "base_model": cfg.base_model}}
    else:
        evaluated = fine_tune(items, read_events(ctx, "fit"), cfg, template, out / EVALUATED / "model")
        result = {"evaluated": evaluated.to_json()}
    if cfg.fine_tune and cfg.refresh_steps:
        refresh = cfg.refreshing(str(out / EVALUATED / "model"))
        shipped = fine_tune(items, read_events(ctx), refresh, template, out / "model")
        result["shipped"] = {"refreshed": True, **shipped.to_json()}
    else:
        shutil.copytree(out / EVALUATED / "model", out / "model")
        result["shipped"] = {"refreshed": False}
    backend = ctx.config.embeddings.backend
    if backend != "torch":  # the compressed CPU encoder beside each model (what embeds and answers `q`)
        from recsys.encoder.model import load_encoder
        from recsys.encoder.onnx_export import export_onnx

        for folder in (out / EVALUATED, out):
            model = load_encoder(str(folder / "model"), "cpu")
            export_onnx(model, folder / "onnx", ctx.config.embeddings.max_seq_length, variants=(backend,))
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")


def _encoder_models(ctx: RunContext) -> dict[str, Path]:
    """Output sub-folder (``evaluated`` or the stage folder itself) -> the encoder whose vectors go there."""
    return {EVALUATED: ctx.artifact("encoder", evaluated=True) / "model", "": ctx.path("encoder") / "model"}


def embed_shard(ctx: RunContext, shard: int, n_shards: int | None = None, force: bool = False) -> Path:
    """Encode one contiguous slice of the catalog with the evaluated and the shipped encoder: GPU fp16
    when present, else ``embeddings.backend`` (ONNX int8 by default) when it agrees with fp32 torch.

    Agreement is measured on the whole catalog's texts (a seeded sample), so every shard makes the
    same choice; the choice and the measured agreement are recorded beside the vectors.
    """
    from recsys.embeddings import encode_items, item_texts, select_encoder
    from recsys.encoder.model import load_encoder

    n_shards = n_shards or ctx.config.scale.shards

    def body(out: Path) -> None:
        cfg = ctx.config.embeddings
        items = read_items(ctx)
        texts = item_texts(items, cfg.template)
        start, stop = shard_bounds(items.height, shard, n_shards)
        for folder, model_dir in _encoder_models(ctx).items():
            choice = select_encoder(load_encoder(str(model_dir)), model_dir.parent / "onnx", cfg, texts)
            encode_items(choice.encoder, items[start:stop], cfg).save(out / folder / "items.npz")
            (out / folder / ENCODER_CHOICE).write_text(json.dumps(choice.to_json(), indent=2) + "\n")

    return run_part(ctx, "embeddings", shard, n_shards, body, force)


@_stage("embeddings")
def embeddings(ctx: RunContext, out: Path) -> None:
    """The catalog's vectors: every shard of ``embed_shard`` (those not done yet run here, in turn),
    concatenated in catalog order; the encoder choice (``encoder.json``) is the first shard's."""
    from recsys.embeddings import ItemEmbeddings

    n_shards = ctx.config.scale.shards
    parts = [embed_shard(ctx, shard, n_shards) for shard in range(n_shards)]
    for folder in _encoder_models(ctx):
        pieces = [ItemEmbeddings.load(part / folder / "items.npz") for part in parts]
        ids = np.concatenate([piece.ids for piece in pieces])
        ItemEmbeddings(ids, np.concatenate([piece.vectors for piece in pieces])).save(
            out / folder / "items.npz"
        )
        shutil.copyfile(parts[0] / folder / ENCODER_CHOICE, out / folder / ENCODER_CHOICE)
    drop_parts(ctx, "embeddings")


@_stage("index")
def index(ctx: RunContext, out: Path) -> None:
    """Build the ANN index over each set of item vectors (backend chosen by catalog size)."""
    from recsys.index import build_index

    for folder in (EVALUATED, ""):
        vectors = read_vectors(ctx.path("embeddings") / folder)
        build_index(vectors, ctx.config.index).save(out / folder)


@_stage("retrieval")
def retrieval(ctx: RunContext, out: Path) -> None:
    """Fit the history-free parts of the candidate sources, each on the data its use may see:
    ``fit`` and ``ship_fit`` (the two rankers' candidates), ``train`` (evaluation), all (serving)."""
    from recsys.retrieval.factory import fit_sources

    items = read_items(ctx)
    catalog = ItemCatalog.from_items(items)
    for folder, part in (("fit", "fit"), ("eval", "train"), ("ship_fit", "ship_fit"), ("serving", None)):
        fit_sources(ctx.config, read_events(ctx, part), items, catalog, out / folder)


@_stage("ranker")
def ranker(ctx: RunContext, out: Path) -> None:
    """Train the ranker twice with one recipe: on the label window before the evaluation window
    (evaluated), and on the data's latest label window (shipped)."""
    cfg = ctx.config.ranking
    for folder, prefix, models in ((EVALUATED, "", "fit"), ("", "ship_", "ship_fit")):
        recommender = candidate_recommender(ctx, models, evaluated=True)
        history, label_train, label_valid = (
            read_events(ctx, prefix + part) for part in ("fit", "label_train", "label_valid")
        )
        sources = [source.name for source in recommender.sources]  # trial sources too, until judged
        names = ranking_feature_names(ctx.config, recommender.behaviour, sources)
        model = train_ranker(recommender, history, label_train, label_valid, names, cfg)
        model.info["label_window"] = [label_train["ts"].min(), label_valid["ts"].max()]
        model.save(out / folder)


@_stage("evaluation")
def evaluation(ctx: RunContext, out: Path) -> None:
    """Full-ranking metrics of the evaluated recipe, each candidate source and every baseline on test."""
    from recsys.evaluation.run_eval import evaluate_run

    report = evaluate_run(ctx, out)
    console.print(report.table())


RECOMMENDATION_COLUMNS = ["user_id", "item_id", "rank", "score"]


def recommend_shard(ctx: RunContext, shard: int, n_shards: int | None = None, force: bool = False) -> Path:
    """Top-k from what the run ships, each user as of their batch moment (:func:`~recsys.batch.
    batch_moments`), for one contiguous slice of the run's users (by moment, then id), to a Parquet part
    (in chunks of users)."""
    from recsys.batch import batch_moments, write_recommendations

    n_shards = n_shards or ctx.config.scale.shards

    def body(out: Path) -> None:
        recommender = candidate_recommender(ctx, "serving", Ranker.load(ctx.path("ranker")), evaluated=False)
        events = read_events(ctx)
        moments = batch_moments(recommender, events)
        # Shards are slices of the users by moment, then id: concatenated, every user in one order.
        users = moments.ordered(events)
        start, stop = shard_bounds(len(users), shard, n_shards)
        cfg = ctx.config.recommend
        write_recommendations(
            recommender,
            Histories.from_interactions(events, recommender.catalog, users=users[start:stop]),
            moments,
            cfg.k,
            cfg.chunk_users,
            out / "recommendations.parquet",
            RECOMMENDATION_COLUMNS,
        )

    return run_part(ctx, "recommendations", shard, n_shards, body, force)


@_stage("recommendations")
def recommendations(ctx: RunContext, out: Path) -> None:
    """Top-k for every user: every shard of ``recommend_shard`` (those not done yet run here, in turn
    or ``scale.processes`` at a time), concatenated (users by moment, then id) into one Parquet file."""
    shards = run_shards(ctx, recommend_shard, ctx.config.scale.processes)
    parts = [part / "recommendations.parquet" for part in shards]
    concat_parquet(parts, out / "recommendations.parquet")
    drop_parts(ctx, "recommendations")


PIPELINE = (
    validate,
    split,
    features,
    encoder,
    embeddings,
    index,
    retrieval,
    ranker,
    evaluation,
    recommendations,
)


def run_pipeline(ctx: RunContext, force: bool = False) -> tuple[Path, bool, str]:
    """Every stage in order, then publish (the ``recsys run`` command and the DAG do the same).

    Holds the run's lock throughout: a second pipeline of the same run id is refused
    (:class:`~recsys.artifacts.RunBusyError`) instead of writing the same stages beside it.
    """
    with ctx.store.run_lock(ctx.run_id):
        for stage in PIPELINE:
            stage(ctx, force=force)
        return publish(ctx)
