"""The whole pipeline on a small demo catalog: artifacts, manifest, quality against its own sources."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from recsys.artifacts import RunStore
from recsys.assemble import candidate_recommender, load_recommender, run_context_of
from recsys.catalog import Histories
from recsys.cli import app
from recsys.config import load_config
from recsys.data.demo import DemoSpec, write_demo
from recsys.device import machine_facts
from recsys.moments import UserMoments
from recsys.pipeline import STAGES, run_pipeline
from recsys.ranking.ranker import Ranker
from recsys.run_context import RunContext

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
    assert set(manifest["versions"]) >= {"python", "torch", "lightgbm", "polars", "onnxruntime"}
    assert manifest["machine"] == machine_facts()  # what moves the encoder's last bits: comparable runs
    features = manifest["feature_set"]["features"]
    assert "user_item_cosine" in features and "cand_covisit_rank" in features
    assert manifest["metrics"]["recsys"]["ndcg@10"] > 0
    assert manifest["config"]["ranking"] == load_config(CONFIG, environ={}).ranking.model_dump()


def test_shipped_ranker_learns_from_the_latest_window_and_the_manifest_names_what_ships(
    finished_run: RunContext,
) -> None:
    store = finished_run.store
    run_dir = store.run_dir("run-test")
    manifest = store.manifest("run-test")
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet")
    last_event = events["ts"].max()
    shipped, evaluated = manifest["artifacts"]["shipped"], manifest["artifacts"]["evaluated"]
    # The shipped ranker's labels end at the data's last event; the evaluated one's before the test window.
    assert manifest["ranker"]["label_window"][1] == last_event
    assert shipped["windows"]["ranker_labels"]["ts_max"] == last_event
    test_window = manifest["data"]["split"]["test"]
    assert manifest["evaluated_ranker"]["label_window"][1] <= test_window["ts_max"]
    assert evaluated["windows"]["ranker_labels"]["ts_max"] < last_event or test_window["ts_min"] == last_event
    # Its candidates came from sources fitted strictly before its labels (per user: on earlier events).
    assert shipped["windows"]["ranker_history"]["ts_max"] <= last_event
    # The shipped encoder has seen every event; the evaluated one only the evaluated ranker's history.
    assert shipped["windows"]["encoder"]["ts_max"] == last_event
    assert evaluated["windows"]["encoder"] == evaluated["windows"]["ranker_history"]
    assert manifest["artifacts"]["encoder"]["shipped"]["refreshed"]
    for which in (shipped, evaluated):
        for name in ("encoder", "embeddings", "index", "ranker", "sources"):
            assert (run_dir / which[name]).exists(), (name, which[name])
    assert (run_dir / shipped["recommendations"]).exists()
    # Evaluated and shipped are different models.
    assert (run_dir / "ranker" / "model.txt").read_text() != (
        run_dir / "ranker" / "evaluated" / "model.txt"
    ).read_text()


def test_the_served_recommender_blends_the_sources_its_ranker_chose(finished_run: RunContext) -> None:
    run_dir = finished_run.store.run_dir("run-test")
    manifest = finished_run.store.manifest("run-test")
    chosen = manifest["ranker"]["sources"]
    assert chosen[:6] == finished_run.config.retrieval.sources  # defaults first, in config order
    # The trial source was fitted and judged on the shipped ranker's label window.
    assert set(manifest["ranker"]["source_trial"]["ndcg@10"]) == {*chosen, "category"}
    assert [source.name for source in load_recommender(run_dir).sources] == chosen
    ranker = Ranker.load(run_dir / "ranker")
    ranker.info["sources"] = ["popular", "category"]
    picked = candidate_recommender(run_context_of(run_dir), "serving", ranker, evaluated=False)
    assert [source.name for source in picked.sources] == ["popular", "category"]


def test_ranker_beats_each_single_candidate_source(finished_run: RunContext) -> None:
    metrics = finished_run.store.manifest("run-test")["metrics"]
    ours = metrics["recsys"]["ndcg@10"]
    sources = {name: values["ndcg@10"] for name, values in metrics.items() if name.startswith("source:")}
    assert len(sources) == 6  # semantic, cold_text, covisit, markov, popular, ease
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


def test_the_cli_answers_as_the_shipped_batch_file_and_can_place_users_at_now(
    finished_run: RunContext, tmp_path: Path
) -> None:
    run_dir = finished_run.store.run_dir("run-test")
    shipped = pl.read_parquet(run_dir / "recommendations" / "recommendations.parquet")
    users = shipped["user_id"].unique().sort().to_list()[:40]
    (tmp_path / "users.csv").write_text("user_id\n" + "\n".join(users) + "\n")
    runs, runner = str(finished_run.store.root), CliRunner()

    def cli_batch(*extra: str) -> pl.DataFrame:
        out = tmp_path / f"recs{len(extra)}.parquet"
        args = ["--config", str(CONFIG), "recommend", "--users", str(tmp_path / "users.csv")]
        result = runner.invoke(app, [*args, "--out", str(out), "--k", "10", "--runs", runs, *extra])
        assert result.exit_code == 0, result.output
        return pl.read_parquet(out).select("user_id", "item_id", "rank").sort("user_id", "rank")

    # per-user protocol: each user as of their own latest event, in the pipeline's file and the CLI alike
    assert finished_run.config.split.protocol == "per_user"
    expected = shipped.filter(pl.col("user_id").is_in(users)).select("user_id", "item_id", "rank")
    assert_frame_equal(cli_batch(), expected.sort("user_id", "rank"), check_dtypes=False)

    recommender = load_recommender(run_dir)
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet")
    histories = Histories.from_interactions(events, recommender.catalog, users=users)
    now = int(events["ts"].max()) + 1  # type: ignore[arg-type]
    at_now = recommender.recommend(histories, UserMoments.at(users, now), 10)
    now_lists = cli_batch("--as-of", "now")
    assert_frame_equal(now_lists, at_now.select("user_id", "item_id", "rank").sort("user_id", "rank"))
    assert not now_lists.equals(expected.sort("user_id", "rank"))  # where users are placed matters
    wrong = runner.invoke(app, ["--config", str(CONFIG), "recommend", "--user", "u1", "--as-of", "today"])
    assert wrong.exit_code != 0 and "--as-of" in wrong.output


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


def test_batch_output_is_the_same_whatever_the_chunk_size(finished_run: RunContext, tmp_path: Path) -> None:
    from recsys.batch import write_batch

    store = finished_run.store
    run_dir = store.run_dir("run-test")
    stage_output = pl.read_parquet(run_dir / "recommendations" / "recommendations.parquet")
    users = stage_output["user_id"].unique(maintain_order=True).to_list()[:40]
    config = finished_run.config.model_copy(deep=True)
    config.recommend.chunk_users = 7  # 40 users: five full chunks and a partial one
    out = tmp_path / "recs.parquet"
    rows = write_batch(config, users, 10, out, "run-test", store.root)
    chunked = pl.read_parquet(out)
    assert rows == chunked.height == 40 * 10
    expected = stage_output.filter(pl.col("user_id").is_in(users))
    # the users' order is kept (the stage's: by moment, then id), each user's ranks ascending
    assert_frame_equal(chunked.select(expected.columns), expected)


def test_evaluation_is_the_same_whatever_the_chunk_size(finished_run: RunContext) -> None:
    """Chunks take users in the order of their moments; every user's list and every metric stay put."""
    import numpy as np

    from recsys.assemble import evaluated_ranker
    from recsys.catalog import ItemCatalog
    from recsys.evaluation.protocol import make_split
    from recsys.evaluation.run_eval import evaluate_recommender
    from recsys.run_context import read_events, read_items

    config = finished_run.config
    split = make_split(
        read_events(finished_run),
        ItemCatalog.from_items(read_items(finished_run)),
        config.split.protocol,
        config.split.test_share,
        config.split.min_user_events,
    )
    recommender = candidate_recommender(finished_run, "eval", evaluated_ranker(finished_run))
    whole = evaluate_recommender(recommender, split, [10, 100], chunk_users=len(split.histories))
    chunked = evaluate_recommender(recommender, split, [10, 100], chunk_users=23)
    assert len(split.histories) > 3 * 23
    assert chunked[0] == whole[0] and chunked[1] == whole[1]
    for name, lists in whole[2].items():
        np.testing.assert_array_equal(chunked[2][name], lists, err_msg=name)


def test_a_run_failing_validation_names_a_quarantine_that_still_exists(tmp_path: Path) -> None:
    from recsys.data.demo import generate_demo

    items, events = generate_demo(DemoSpec(users=40, items=60, events=800, topics=4, seed=2))
    unknown = events.head(40).with_columns(pl.lit("no-such-item").alias("item_id"))  # 5% of the rows
    data = tmp_path / "data"
    data.mkdir()
    items.write_parquet(data / "items.parquet")
    pl.concat([events.tail(events.height - 40), unknown]).write_parquet(data / "interactions.parquet")
    runs = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["--config", str(CONFIG), "run", "--data", str(data), "--runs", str(runs), "--run-id", "bad"]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    quarantine = runs / "quarantine" / "bad" / "interactions.quarantine.parquet"
    assert quarantine.exists(), result.output
    assert "quarantine" in result.output
    assert pl.read_parquet(quarantine).height == 40
