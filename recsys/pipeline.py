"""The nightly pipeline: one idempotent function per stage, keyed by run id.

Each stage reads the outputs of earlier stages from the run's staging folder and writes
its own output folder atomically (``RunStore.stage_output``); a stage whose output exists
is skipped, so a killed run resumes where it stopped and a re-run of the same logical
date rewrites the same run. ``publish`` moves the finished run into place and applies
the quality gate. The DAG and the CLI call exactly these functions.

Time discipline (no leakage):

* evaluation split (``split`` config): ``train`` | ``test``;
* inside ``train``, the ranker's label window (``ranking.label_share``): ``fit`` | ``label``,
  and ``label`` is split again in time into ``label_train`` | ``label_valid`` (early stopping picks
  the number of trees; the ranker is then refit on the whole label window);
* the encoder is fine-tuned on ``fit`` only and reused everywhere (refitting it per window is
  too slow: the documented trade-off); the cheap history-free models (popularity,
  co-visitation, EASE) are fitted three times: on ``fit`` to generate the ranker's training
  candidates, on ``train`` for evaluation, on all data for serving;
* behavioural features are always computed as of the moment they describe (the user's first
  target event snapped down to a grid, or just after the latest event for serving).
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys import __version__
from recsys.artifacts import RunStore, atomic_write_json, run_id_for
from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config, config_of_run
from recsys.console import console
from recsys.data import load_dataset, per_user_split
from recsys.data.splits import global_split, time_at_share
from recsys.evaluation.run_eval import PROMOTED
from recsys.ranking.behaviour import OfflineBehaviour
from recsys.ranking.features import ITEM_FEATURES, SEMANTIC_FEATURES, BehaviouralFeatures
from recsys.ranking.ranker import Ranker
from recsys.recommend import Recommender
from recsys.retrieval.blend import source_columns

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
SPLIT_PARTS = ("train", "test", "fit", "label_train", "label_valid")


@dataclass
class RunContext:
    """Where a run reads its input and writes its stages."""

    config: Config
    store: RunStore
    run_id: str
    data_dir: Path
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: Config,
        data_dir: Path | None = None,
        runs_dir: Path | None = None,
        run_id: str | None = None,
    ) -> RunContext:
        return cls(
            config=config,
            store=RunStore(runs_dir or Path(config.pipeline.runs_dir)),
            run_id=run_id or run_id_for(),
            data_dir=Path(data_dir or config.pipeline.data_dir),
        )

    def path(self, stage: str) -> Path:
        """Output of a finished stage (staged, or already published)."""
        for candidate in (self.store.stage_done(self.run_id, stage), self.store.run_dir(self.run_id) / stage):
            if candidate is not None and candidate.exists():
                return candidate
        raise FileNotFoundError(f"run {self.run_id}: stage '{stage}' has not run yet")


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


# -- reading stage outputs -------------------------------------------------------
def read_items(ctx: RunContext) -> pl.DataFrame:
    return pl.read_parquet(ctx.path("data") / "items.parquet")


def read_events(ctx: RunContext, part: str | None = None) -> pl.DataFrame:
    if part is None:
        return pl.read_parquet(ctx.path("data") / "interactions.parquet")
    return pl.read_parquet(ctx.path("split") / f"{part}.parquet")


def read_vectors(folder: Path) -> np.ndarray:
    from recsys.embeddings import ItemEmbeddings

    return ItemEmbeddings.load(folder / "items.npz").vectors


# -- stages -----------------------------------------------------------------------
@_stage("data")
def validate(ctx: RunContext, out: Path) -> None:
    """Validate the input folder; clean tables to Parquet, bad rows to quarantine."""
    cfg = ctx.config.data
    dataset = load_dataset(
        ctx.data_dir, max_bad_share=cfg.max_bad_share, as_of=cfg.as_of, quarantine_dir=out / "quarantine"
    )
    dataset.items.write_parquet(out / "items.parquet")
    dataset.interactions.write_parquet(out / "interactions.parquet")
    start, end = dataset.time_range
    summary = {"stats": dataset.stats, "time_range": [start, end], "source": str(ctx.data_dir.resolve())}
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
    """Evaluation split, then the ranker's label window inside train (see module docstring)."""
    cfg = ctx.config
    events = read_events(ctx)
    protocol, min_events = cfg.split.protocol, cfg.split.min_user_events
    train, test = split_by_protocol(events, protocol, cfg.split.test_share, min_events)
    fit, label = split_by_protocol(train, protocol, cfg.ranking.label_share, min_events)
    label_train, label_valid = split_by_protocol(label, protocol, 0.5, 2)
    parts = {"train": train, "test": test, "fit": fit, "label_train": label_train, "label_valid": label_valid}
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
    """Fine-tune the sentence encoder on pairs from the fit part of the logs."""
    from recsys.encoder.train import fine_tune

    result = fine_tune(
        read_items(ctx),
        read_events(ctx, "fit"),
        ctx.config.encoder,
        ctx.config.embeddings.template,
        out / "model",
    )
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")


@_stage("embeddings")
def embeddings(ctx: RunContext, out: Path) -> None:
    """Encode the whole catalog with the fine-tuned encoder (GPU fp16 when present)."""
    from recsys.embeddings import encode_items
    from recsys.encoder.model import load_encoder

    model = load_encoder(str(ctx.path("encoder") / "model"))
    encode_items(model, read_items(ctx), ctx.config.embeddings).save(out / "items.npz")


@_stage("index")
def index(ctx: RunContext, out: Path) -> None:
    """Build the ANN index over the item vectors (backend chosen by catalog size)."""
    from recsys.index import build_index

    build_index(read_vectors(ctx.path("embeddings")), ctx.config.index).save(out)


@_stage("retrieval")
def retrieval(ctx: RunContext, out: Path) -> None:
    """Fit the history-free parts of the candidate sources on ``fit`` (ranker training),
    ``train`` (evaluation) and all data (serving): as fresh as each use allows, never later."""
    from recsys.retrieval.factory import fit_sources

    catalog = ItemCatalog.from_items(read_items(ctx))
    fit_sources(ctx.config, read_events(ctx, "fit"), catalog, out / "fit")
    fit_sources(ctx.config, read_events(ctx, "train"), catalog, out / "eval")
    fit_sources(ctx.config, read_events(ctx), catalog, out / "serving")


def candidate_recommender(ctx: RunContext, models: str, ranker: Ranker | None = None) -> Recommender:
    """A recommender over this run's artifacts; ``models``: 'fit', 'eval' or 'serving'; offline behaviour."""
    from recsys.index import load_index
    from recsys.retrieval.factory import load_sources, user_vector_fn

    items = read_items(ctx)
    catalog = ItemCatalog.from_items(items)
    vectors = read_vectors(ctx.path("embeddings"))
    user_vectors = user_vector_fn(ctx.config, vectors, items, ctx.path("encoder") / "model")
    index = load_index(ctx.path("index"))
    sources = load_sources(ctx.config, ctx.path("retrieval") / models, catalog, index, user_vectors)
    behaviour = OfflineBehaviour(read_events(ctx), items, ctx.config.features)
    return Recommender(ctx.config, catalog, items, vectors, sources, behaviour, ranker, ctx.run_id)


def ranking_feature_names(config: Config, behaviour: BehaviouralFeatures) -> list[str]:
    """The named feature set of the ranker (recorded in the manifest)."""
    return [*source_columns(config.retrieval.sources), *SEMANTIC_FEATURES, *behaviour.names(), *ITEM_FEATURES]


AS_OF_GRID = 48


def snap_down(moments: np.ndarray, points: int = AS_OF_GRID) -> np.ndarray:
    """Each moment moved down to one of at most ``points`` quantile grid points.

    Point-in-time features are computed once per distinct as-of time; snapping per-user
    times *down* bounds that work while never looking past a user's own moment.
    """
    grid = np.unique(np.quantile(moments, np.linspace(0.0, 1.0, points), method="lower"))
    return grid[np.searchsorted(grid, moments, side="right") - 1]


def _targets(
    history: pl.DataFrame, targets: pl.DataFrame, catalog: ItemCatalog, max_users: int | None, seed: int
) -> tuple[Histories, dict[str, int]]:
    """Histories of users with target events, and each user's as-of time (their first target)."""
    users = targets.group_by("user_id").agg(pl.col("ts").min()).sort("user_id")
    if max_users is not None and users.height > max_users:
        users = users.sample(max_users, seed=seed).sort("user_id")
    first = users["ts"].to_numpy()
    as_of = dict(zip(users["user_id"].to_list(), snap_down(first).tolist(), strict=True))
    return Histories.from_interactions(history, catalog, users=list(as_of)), as_of


def labelled_candidates(
    recommender: Recommender,
    history: pl.DataFrame,
    targets: pl.DataFrame,
    max_users: int | None,
    seed: int,
    graded: bool = False,
) -> pl.DataFrame:
    """Candidates with features and a label: 1 if the user interacted with the item in ``targets``.

    ``graded``: 2 for items rated >= 4, 1 for other interactions. Users none of whose targets
    were retrieved carry no ranking signal and are dropped.
    """
    histories, as_of = _targets(history, targets, recommender.catalog, max_users, seed)
    frame = recommender.candidate_features(histories, as_of)
    relevant = pl.lit(1)
    if graded and "rating" in targets.columns:
        relevant = pl.when(pl.col("rating").max() >= 4).then(2).otherwise(1)
    grades = targets.group_by("user_id", "item_id").agg(relevant.alias("label"))
    frame = frame.join(grades, on=["user_id", "item_id"], how="left").with_columns(
        pl.col("label").fill_null(0)
    )
    useful = frame.group_by("user_id").agg(pl.col("label").max()).filter(pl.col("label") > 0)["user_id"]
    return frame.filter(pl.col("user_id").is_in(useful.implode())).sort("user_id", "item_idx")


@_stage("ranker")
def ranker(ctx: RunContext, out: Path) -> None:
    """Train LightGBM lambdarank on label-window candidates; early-stop on the later half.

    With ``ranking.refit``, the model is then grown again, with the chosen number of trees, on
    the whole label window (both halves as targets of the ``fit`` history): twice the labels,
    and the same shape of task as evaluation and serving (everything after a moment is a target).
    """
    cfg = ctx.config.ranking
    recommender = candidate_recommender(ctx, "fit")
    fit, label_train, label_valid = (read_events(ctx, part) for part in ("fit", "label_train", "label_valid"))
    rows = partial(
        labelled_candidates, recommender, max_users=cfg.max_users, seed=cfg.seed, graded=cfg.graded
    )
    train_rows = rows(fit, label_train)
    valid_rows = rows(pl.concat([fit, label_train]), label_valid)
    names = ranking_feature_names(ctx.config, recommender.behaviour)
    model = Ranker.fit(train_rows, valid_rows, names, cfg)
    if cfg.refit:
        chosen = model.info
        rounds = max(1, round(chosen["best_iteration"] * cfg.refit_rounds_factor))
        model = Ranker.fit(rows(fit, pl.concat([label_train, label_valid])), None, names, cfg, rounds=rounds)
        model.info |= {"valid_ndcg@10": chosen["valid_ndcg@10"], "early_stopping": chosen, "refit": True}
    model.save(out)


def load_recommender(run_dir: Path, behaviour: BehaviouralFeatures | None = None) -> Recommender:
    """The serving recommender of a finished run (models fitted on all data)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = config_of_run(manifest["config"])
    ctx = RunContext(config, RunStore(run_dir.parent), run_dir.name, Path(manifest["data"]["source"]))
    recommender = candidate_recommender(ctx, "serving", Ranker.load(run_dir / "ranker"))
    if behaviour is not None:
        recommender.behaviour = behaviour
    return recommender


@_stage("evaluation")
def evaluation(ctx: RunContext, out: Path) -> None:
    """Full-ranking metrics of recsys, each candidate source and every baseline on the test split."""
    from recsys.evaluation.run_eval import evaluate_run

    report = evaluate_run(ctx, out)
    console.print(report.table())


@_stage("recommendations")
def recommendations(ctx: RunContext, out: Path) -> None:
    """Top-k for every user as of now (serving models), to Parquet."""
    recommender = candidate_recommender(ctx, "serving", Ranker.load(ctx.path("ranker")))
    events = read_events(ctx)
    now = int(events["ts"].max()) + 1  # type: ignore[arg-type]
    histories = Histories.from_interactions(events, recommender.catalog)
    recs = recommender.recommend(histories, dict.fromkeys(histories.user_ids, now), ctx.config.recommend.k)
    recs.select("user_id", "item_id", "rank", "score").write_parquet(out / "recommendations.parquet")


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


def _versions() -> dict[str, str]:
    names = [
        "recsys",
        "torch",
        "sentence-transformers",
        "transformers",
        "faiss-cpu",
        "faiss-gpu",
        "lightgbm",
        "polars",
    ]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _code_version() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def build_manifest(ctx: RunContext) -> dict[str, Any]:
    summary = json.loads((ctx.path("data") / "summary.json").read_text())
    ranker_meta = json.loads((ctx.path("ranker") / "ranker.json").read_text())
    report = json.loads((ctx.path("evaluation") / "report.json").read_text())
    metrics = {model: slices["all"] for model, slices in report["results"].items()}
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recsys_version": __version__,
        "code_version": _code_version(),
        "versions": _versions(),
        "config": ctx.config.model_dump(mode="json"),
        "data": {**summary, "split": json.loads((ctx.path("split") / "split.json").read_text())},
        "feature_set": {"name": "ranker-default", "features": ranker_meta["features"]},
        "ranker": ranker_meta["info"],
        "metrics": metrics,
        "evaluation": report["meta"],
        "timings_s": ctx.timings,
        "parent_run": ctx.store.current(),
        "status": "candidate",
    }


def gate(store: RunStore, run_id: str, manifest: dict[str, Any], tolerance: float) -> tuple[bool, str]:
    """Promote when NDCG@10 >= the promoted run's x (1 - tolerance) on the same evaluation window.

    The evaluation stage re-scores the promoted run on this run's split (``promoted:<id>``), so
    a night with new data still compares both models on one window; without that row (a re-run
    on the same data, or a run published before), the two runs' own figures are compared and the
    reason says whether their windows are the same. Judged on the staged manifest before anything
    moves, so a regressing re-run of the promoted date cannot replace the run that is serving.
    """
    current = store.current()
    if current is None:
        return True, "first promoted run"
    old = store.manifest(current)
    new_ndcg = float(manifest["metrics"]["recsys"]["ndcg@10"])
    rescored = manifest["metrics"].get(f"{PROMOTED}{current}")
    if rescored is not None:
        old_ndcg = float(rescored["ndcg@10"])
        window = "same evaluation window: the promoted run re-scored on this run's split"
    else:
        old_ndcg = float(old["metrics"]["recsys"]["ndcg@10"])
        same_window = manifest["data"]["split"]["test"] == old["data"]["split"]["test"]
        window = "same evaluation window" if same_window else "evaluation windows differ"
    floor = old_ndcg * (1 - tolerance)
    rerun = "re-run of the promoted run: " if current == run_id else ""
    verdict = (
        f"{rerun}NDCG@10 {new_ndcg:.4f} vs promoted {current} {old_ndcg:.4f} (floor {floor:.4f}, {window})"
    )
    return new_ndcg >= floor, verdict


def publish(ctx: RunContext) -> tuple[Path, bool, str]:
    """Gate the staged run, move it into place, and promote it if it passed.

    A rejected new run is published with status ``rejected`` (kept for inspection); a rejected
    re-run of the promoted run stays staged, so the serving run is never replaced by a worse one.
    """
    store = ctx.store
    manifest = build_manifest(ctx)
    promote, reason = gate(store, ctx.run_id, manifest, ctx.config.pipeline.gate_tolerance)
    if not promote and store.current() == ctx.run_id:
        staged = store.staging_dir(ctx.run_id)
        atomic_write_json(
            staged / "manifest.json", {**manifest, "status": "rejected", "rejected_reason": reason}
        )
        return staged, False, reason
    run_dir = store.publish(ctx.run_id, manifest)
    if promote:
        store.promote(ctx.run_id, reason)
    else:
        store.update_manifest(ctx.run_id, status="rejected", rejected_reason=reason)
    return run_dir, promote, reason


def run_pipeline(ctx: RunContext, force: bool = False) -> tuple[Path, bool, str]:
    """Every stage in order, then publish (the ``recsys run`` command and the DAG do the same)."""
    for stage in PIPELINE:
        stage(ctx, force=force)
    return publish(ctx)
