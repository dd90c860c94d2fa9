from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from recsys.config import RankingConfig
from recsys.ranking.ranker import Ranker


def synthetic(users: int, seed: int) -> pl.DataFrame:
    """Groups of 20 candidates; relevance is driven by feature ``signal``, ``noise`` is useless."""
    rng = np.random.default_rng(seed)
    n = users * 20
    signal = rng.random(n)
    label = (signal + 0.1 * rng.random(n) > 0.85).astype(np.int64) + (signal > 0.97)
    return pl.DataFrame(
        {
            "user_id": np.repeat([f"u{i:04d}" for i in range(users)], 20),
            "signal": signal,
            "noise": rng.random(n),
            "label": label,
        }
    ).with_columns(pl.when(pl.col("noise") > 0.9).then(None).otherwise(pl.col("signal")).alias("signal"))


def test_ranker_learns_orders_saves_and_explains(tmp_path: Path) -> None:
    config = RankingConfig(n_estimators=60, early_stopping_rounds=10, min_child_samples=5)
    train, valid = synthetic(150, 1), synthetic(50, 2)
    ranker = Ranker.fit(train, valid, ["signal", "noise"], config)
    assert ranker.info["valid_ndcg@10"] > 0.8
    importance = ranker.importance()
    assert importance["signal"]["gain"] > importance["noise"]["gain"]

    scores = ranker.predict(valid)
    contributions = ranker.contributions(valid)
    assert contributions.columns == ["signal", "noise", "bias"]
    assert np.allclose(contributions.sum_horizontal().to_numpy(), scores, atol=1e-6)

    ranker.save(tmp_path / "ranker")
    assert (tmp_path / "ranker" / "model.txt").read_text().startswith("tree")
    loaded = Ranker.load(tmp_path / "ranker")
    assert np.array_equal(loaded.predict(valid), scores)
    assert loaded.features == ["signal", "noise"]


def test_refit_without_validation_grows_exactly_the_rounds_asked(tmp_path: Path) -> None:
    config = RankingConfig(n_estimators=500, min_child_samples=5)
    train = synthetic(150, 3)
    ranker = Ranker.fit(train, None, ["signal", "noise"], config, rounds=17)
    assert ranker.info["best_iteration"] == ranker.booster.current_iteration() == 17
    ranker.save(tmp_path / "ranker")
    assert Ranker.load(tmp_path / "ranker").booster.current_iteration() == 17
    scores = ranker.predict(synthetic(20, 4))
    assert np.isfinite(scores).all() and len(np.unique(scores)) > 1
