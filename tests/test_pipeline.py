"""The whole pipeline on a small demo catalog: artifacts, manifest, quality against its own sources."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.artifacts import RunStore
from recsys.cli import app
from recsys.config import load_config
from recsys.data.demo import DemoSpec, write_demo
from recsys.pipeline import STAGES, RunContext, run_pipeline

CONFIG = Path(__file__).parent / "pipeline_config.yaml"
SPEC = DemoSpec(users=400, items=500, events=24_000, topics=12, seed=5)

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    root = tmp_path_factory.mktemp("pipeline")
    write_demo(root / "data", SPEC)
    ctx = RunContext.create(load_config(CONFIG, environ={}), root / "data", root / "runs", "run-test")
    run_pipeline(ctx)
    return ctx


def test_run_is_published_self_describing_and_promoted(finished_run: RunContext) -> None:
    store = finished_run.store
    assert store.current() == "run-test"
    run_dir = store.run_dir("run-test")
    for stage in STAGES:
        assert (run_dir / stage).is_dir(), stage
    assert not (store.root / ".staging" / "run-test").exists()
    manifest = store.manifest("run-test")
    assert manifest["status"] == "promoted"
    assert manifest["data"]["stats"]["interactions"] == SPEC.events
    assert manifest["data"]["split"]["test"]["rows"] > 0
    assert set(manifest["versions"]) >= {"python", "torch", "lightgbm", "polars"}
    features = manifest["feature_set"]["features"]
    assert "user_item_cosine" in features and "cand_covisit_rank" in features
    assert manifest["metrics"]["recsys"]["ndcg@10"] > 0
    assert manifest["config"]["ranking"] == load_config(CONFIG, environ={}).ranking.model_dump()


def test_ranker_beats_each_single_candidate_source(finished_run: RunContext) -> None:
    metrics = finished_run.store.manifest("run-test")["metrics"]
    ours = metrics["recsys"]["ndcg@10"]
    sources = {name: values["ndcg@10"] for name, values in metrics.items() if name.startswith("source:")}
    assert len(sources) == 4
    for name, value in sources.items():
        assert ours > value, f"recsys {ours:.4f} <= {name} {value:.4f}"
    assert ours > metrics["popular"]["ndcg@10"]


def test_batch_recommendations_exclude_seen_items(finished_run: RunContext) -> None:
    run_dir = finished_run.store.run_dir("run-test")
    recs = pl.read_parquet(run_dir / "recommendations" / "recommendations.parquet")
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet")
    assert recs.columns == ["user_id", "item_id", "rank", "score"]
    assert recs["user_id"].n_unique() == events["user_id"].n_unique()
    assert recs.group_by("user_id").len()["len"].max() == 10  # recommend.k in the test config
    seen = events.select("user_id", "item_id").unique()
    assert recs.join(seen, on=["user_id", "item_id"], how="semi").height == 0
    ranked = recs.sort("user_id", "rank")
    per_user_sorted = ranked.group_by("user_id", maintain_order=True).agg(
        (pl.col("score").diff().drop_nulls() <= 0).all().alias("ok")
    )
    assert per_user_sorted["ok"].all()


def test_recommend_cli_for_known_unknown_and_batch_users(finished_run: RunContext, tmp_path: Path) -> None:
    runs = str(finished_run.store.root)
    runner = CliRunner()
    known = runner.invoke(
        app, ["--config", str(CONFIG), "recommend", "--user", "u1", "--k", "5", "--runs", runs]
    )
    assert known.exit_code == 0, known.output
    assert "fallback" not in known.output
    unknown = runner.invoke(app, ["--config", str(CONFIG), "recommend", "--user", "nobody", "--runs", runs])
    assert unknown.exit_code == 0, unknown.output
    assert "fallback" in unknown.output
    users = tmp_path / "users.csv"
    users.write_text("user_id\nu1\nu2\nnobody\n")
    out = tmp_path / "recs.parquet"
    batch = runner.invoke(
        app, ["--config", str(CONFIG), "recommend", "--users", str(users), "--out", str(out), "--runs", runs]
    )
    assert batch.exit_code == 0, batch.output
    recs = pl.read_parquet(out)
    assert sorted(recs["user_id"].unique().to_list()) == ["nobody", "u1", "u2"]
    assert recs.filter(pl.col("user_id") == "nobody")["fallback"].all()
    assert not recs.filter(pl.col("user_id") == "u1")["fallback"].any()


def test_evaluation_report_covers_sources_baselines_and_slices(finished_run: RunContext) -> None:
    report = json.loads((finished_run.store.run_dir("run-test") / "evaluation" / "report.json").read_text())
    assert {"recsys", "popular", "ease", "source:semantic"} <= set(report["results"])
    assert set(report["results"]["recsys"]) == {"all", "cold_items", "sparse_users", "heavy_users"}
    assert 0 < report["meta"]["candidates_recall"] <= 1


def test_a_second_run_with_the_same_data_goes_through_the_gate(finished_run: RunContext) -> None:
    store = RunStore(finished_run.store.root)
    again = RunContext(finished_run.config, store, "run-test-2", finished_run.data_dir)
    for stage in ("data", "split", "features", "encoder", "embeddings", "index", "retrieval"):
        # Reuse the finished stages (same inputs) so that only the gate is exercised here.
        target = store.staging_dir("run-test-2") / stage
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(store.run_dir("run-test") / stage)
    _, promoted, reason = run_pipeline(again)
    assert promoted, reason
    assert "same evaluation window: the promoted run re-scored" in reason
    assert store.current() == "run-test-2"
    # The promoted run re-scored on the new run's split (the same data here) gives its own figure back.
    rescored = store.manifest("run-test-2")["metrics"]["promoted:run-test"]
    assert rescored["ndcg@10"] == pytest.approx(store.manifest("run-test")["metrics"]["recsys"]["ndcg@10"])
    # Same inputs, same model: candidate features and training are deterministic.
    model = store.run_dir("run-test") / "ranker" / "model.txt"
    assert (store.run_dir("run-test-2") / "ranker" / "model.txt").read_text() == model.read_text()
    assert (
        store.manifest("run-test-2")["metrics"]["recsys"] == store.manifest("run-test")["metrics"]["recsys"]
    )
