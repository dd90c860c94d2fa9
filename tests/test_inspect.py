"""``recsys inspect`` on a real run of the dev dataset (MovieLens small + TMDB text), and the drift maths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import load_config
from recsys.inspect import RunInspector, _gini, population_stability
from recsys.pipeline import run_pipeline
from recsys.ranking.explain import BIAS, RANKED, SEEN, contribution_column
from recsys.run_context import RunContext

DEV_DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "movielens_small_tmdb"
TINY_CONFIG = """
encoder: {max_pairs: 500, epochs: 1, max_steps: 20, refresh_steps: 5, batch_size: 16, max_seq_length: 32,
          eval_max_queries: 30, eval_corpus_items: 200}
embeddings: {batch_size: 128, max_seq_length: 32}
index: {backend: exact}
retrieval: {per_source_k: 50, candidates_k: 100}
ranking: {n_estimators: 30, early_stopping_rounds: 10, min_child_samples: 10, threads: 1}
evaluation: {ks: [10, 100], baselines: [popular]}
recommend: {k: 10}
"""


@pytest.fixture(scope="session")
def dev_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published run of the dev dataset with a tiny config (a few minutes on 2 CPU cores)."""
    if not (DEV_DATASET / "interactions.parquet").exists():
        pytest.skip(f"dev dataset not found at {DEV_DATASET} (it sits beside the repo in CI)")
    root = tmp_path_factory.mktemp("inspect")
    (root / "config.yaml").write_text(TINY_CONFIG)
    config = load_config(root / "config.yaml", environ={})
    ctx = RunContext.create(config, DEV_DATASET, root / "runs", "run-inspect")
    run_pipeline(ctx)
    return ctx.store.run_dir("run-inspect")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
@pytest.mark.integration
def test_inspect_user_contributions_add_up_to_the_score(dev_run: Path, tmp_path: Path) -> None:
    recommendations = pl.read_parquet(dev_run / "recommendations" / "recommendations.parquet")
    user = recommendations["user_id"].sort()[0]
    output = tmp_path / "explained.parquet"
    printed = _cli(
        "inspect", "--runs", str(dev_run.parent), "--user", user, "--k", "10", "--out", str(output)
    )

    shown = pl.read_parquet(output)
    assert shown.height == 10 and shown["user_id"].unique().to_list() == [user]
    features = RunInspector.open(dev_run).features
    total = shown.select(BIAS, *[contribution_column(f) for f in features]).sum_horizontal()
    np.testing.assert_allclose(total.to_numpy(), shown["score"].to_numpy(), rtol=0, atol=1e-9)
    # the explained ranking is the one the batch job served
    batch = recommendations.filter(pl.col("user_id") == user).sort("rank")
    assert shown["item_id"].to_list() == batch["item_id"].to_list()
    np.testing.assert_allclose(shown["score"].to_numpy(), batch["score"].to_numpy(), rtol=1e-6)
    for item_id in shown["item_id"].head(3):
        assert f" {item_id} " in printed
    assert "newest first" in printed


@pytest.mark.slow
@pytest.mark.integration
def test_inspect_item_explains_rank_and_seen_items(dev_run: Path) -> None:
    inspector = RunInspector.open(dev_run)
    user = inspector.sample_users(1)[0]
    top = inspector.user(user, k=5)
    explanation = inspector.item(user, top["item_id"][1])
    assert explanation.status == RANKED and explanation.rank == 2
    assert explanation.contributions["delta"].sum() == pytest.approx(
        explanation.score - explanation.mean_score, abs=1e-9
    )
    seen = inspector.history(user, n=1)["item_id"][0]
    assert inspector.item(user, seen).status == SEEN
    printed = _cli("inspect", "--runs", str(dev_run.parent), "--user", user, "--item", seen, "--k", "3")
    assert "already interacted" in printed


@pytest.mark.slow
@pytest.mark.integration
def test_inspect_features_importance_distributions_drift(dev_run: Path, tmp_path: Path) -> None:
    printed = _cli("inspect", "--runs", str(dev_run.parent), "features", "--top", "5", "--out", str(tmp_path))
    assert "feature importance" in printed and "drift" in printed
    inspector = RunInspector.open(dev_run)
    importance = pl.read_parquet(tmp_path / "importance.parquet")
    assert sorted(importance["feature"]) == sorted(inspector.features)
    stored = inspector.recommender.ranker.importance()  # type: ignore[union-attr]
    for row in importance.iter_rows(named=True):
        assert row["gain"] == pytest.approx(stored[row["feature"]]["gain"])
    assert importance["gain_share"].sum() == pytest.approx(1.0)
    assert importance["contribution_share"].sum() == pytest.approx(1.0)
    assert importance["mean_abs_contribution"].max() > 0

    distributions = pl.read_parquet(tmp_path / "distributions.parquet")
    assert distributions["positives"].min() > 0 and distributions["negatives"].min() > 0
    drift = pl.read_parquet(tmp_path / "drift.parquet")
    assert drift["psi"].min() >= 0 and drift["psi"].is_sorted(descending=True)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    assert population_stability(reference, rng.normal(size=20_000)) < 0.01
    assert population_stability(reference, rng.normal(loc=1.0, size=20_000)) > 0.25
    with_missing = np.where(rng.random(20_000) < 0.5, np.nan, rng.normal(size=20_000))
    assert population_stability(reference, with_missing) > 0.25, "a jump in missing values is drift"


def test_gini_of_exposure() -> None:
    assert _gini(np.full(10, 3)) == pytest.approx(0.0)
    assert _gini(np.r_[np.zeros(9), 5.0]) == pytest.approx(0.9)
    assert _gini(np.zeros(4)) == 0.0
