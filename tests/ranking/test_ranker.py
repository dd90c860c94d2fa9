from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.config import RankingConfig
from recsys.ranking.ranker import (
    PARALLEL_ROWS,
    EarlyStopping,
    Ranker,
    average_rankers,
    feature_matrix,
    group_sizes,
    lambdarank_params,
    ndcg_at,
    split_values,
    stopping_callback,
)
from recsys.ranking.training_set import best_single_source


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
    np.testing.assert_allclose(loaded.predict(valid), scores, rtol=0, atol=1e-6)
    assert loaded.features == ["signal", "noise"]


def test_loaded_ranker_predicts_with_compiled_trees_equal_to_lightgbm(tmp_path: Path) -> None:
    config = RankingConfig(n_estimators=80, num_leaves=15, min_child_samples=5)
    ranker = Ranker.fit(synthetic(150, 5), synthetic(50, 6), ["signal", "noise"], config)
    assert ranker.compiled is None  # a freshly fitted ranker predicts with LightGBM
    ranker.save(tmp_path / "ranker")
    loaded = Ranker.load(tmp_path / "ranker")
    assert loaded.compiled is not None
    rng = np.random.default_rng(7)
    matrix = np.vstack(
        [
            split_values(loaded.booster, 3000, seed=11),  # on and beside every threshold, zero, NaN
            rng.normal(0.5, 1.0, (500, 2)),
            np.full((1, 2), np.nan),
        ]
    )
    expected = loaded.booster.predict(matrix, num_threads=1)
    np.testing.assert_allclose(loaded.compiled(matrix), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_matrix(matrix), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_matrix(matrix[:1]), expected[:1], rtol=0, atol=1e-6)
    many = np.tile(matrix, (PARALLEL_ROWS // len(matrix) + 1, 1))  # scored on every core: the same bits
    np.testing.assert_array_equal(
        loaded.compiled(many), np.tile(loaded.compiled(matrix), len(many) // len(matrix))
    )
    assert loaded.predict_matrix(matrix[:0]).shape == (0,)
    loaded.info["fallback_source"] = "x"  # the fallback order applies to the compiled scores alike
    loaded.features = ["cand_x_rank", "noise"]
    ranked = loaded.predict_matrix(np.asarray([[2.0, 0.1], [np.nan, 0.1], [1.0, 0.3]]))
    assert ranked[2] > ranked[0] > ranked[1]


def test_early_stopping_follows_the_windows_mean_past_one_lucky_round() -> None:
    lucky, rising = [0.30, 0.50], [0.31, 0.32, 0.34, 0.36, 0.38, 0.40, 0.42, 0.44, 0.44, 0.43, 0.44]
    lucky_then_rising = lucky + rising + [0.3] * 9

    def run(rule: EarlyStopping) -> EarlyStopping:
        for score in lucky_then_rising:
            if rule.update(score):
                break
        return rule

    one_round = run(EarlyStopping(patience=8, window=1))
    assert (one_round.best_iteration, one_round.best_score) == (2, 0.50)  # stopped at round 10
    assert len(one_round.scores) == 10
    windowed = run(EarlyStopping(patience=8, window=4))
    assert windowed.best_iteration == 13  # rounds 10-13 average 0.4375, the best four in a row
    assert windowed.best_score == 0.44
    assert len(windowed.scores) == 21


def test_early_stopping_over_one_round_is_lightgbms_own_rule() -> None:
    import lightgbm as lgb

    config = RankingConfig(n_estimators=300, min_child_samples=5, learning_rate=0.3)
    train, valid = synthetic(100, 5), synthetic(30, 6)

    def best_iteration(callback: object) -> tuple[int, float]:
        model = lgb.LGBMRanker(**lambdarank_params(config), n_jobs=1)
        model.fit(
            feature_matrix(train, ["signal", "noise"]),
            train["label"].to_numpy(),
            group=group_sizes(train),
            eval_X=(feature_matrix(valid, ["signal", "noise"]),),
            eval_y=(valid["label"].to_numpy(),),
            eval_group=[group_sizes(valid)],
            eval_at=[10],
            callbacks=[callback],
        )
        return model.best_iteration_, model.best_score_["valid_0"]["ndcg@10"]

    ours = best_iteration(stopping_callback(EarlyStopping(patience=10, window=1)))
    assert ours == best_iteration(lgb.early_stopping(10, verbose=False))
    assert ours[0] < 300  # it stopped early, so the rule was tested, not the last round


def test_refit_without_validation_grows_exactly_the_rounds_asked(tmp_path: Path) -> None:
    config = RankingConfig(n_estimators=500, min_child_samples=5)
    train = synthetic(150, 3)
    ranker = Ranker.fit(train, None, ["signal", "noise"], config, rounds=17)
    assert ranker.info["best_iteration"] == ranker.booster.current_iteration() == 17
    ranker.save(tmp_path / "ranker")
    assert Ranker.load(tmp_path / "ranker").booster.current_iteration() == 17
    scores = ranker.predict(synthetic(20, 4))
    assert np.isfinite(scores).all() and len(np.unique(scores)) > 1


def test_averaged_ranker_scores_saves_compiles_and_explains_as_the_mean_of_its_members(
    tmp_path: Path,
) -> None:
    members = [
        Ranker.fit(synthetic(150, 3), None, ["signal", "noise"], RankingConfig(seed=seed), rounds=rounds)
        for seed, rounds in ((1, 7), (2, 12), (3, 4))
    ]
    averaged = average_rankers(members)
    assert averaged.booster.current_iteration() == averaged.info["best_iteration"] == 7 + 12 + 4
    assert [member["best_iteration"] for member in averaged.info["members"]] == [7, 12, 4]
    rows = synthetic(40, 9)
    mean = np.mean([member.predict(rows) for member in members], axis=0)
    np.testing.assert_allclose(averaged.predict(rows), mean, rtol=0, atol=1e-12)
    contributions = np.mean([member.contributions(rows).to_numpy() for member in members], axis=0)
    np.testing.assert_allclose(averaged.contributions(rows).to_numpy(), contributions, rtol=0, atol=1e-12)
    averaged.save(tmp_path / "ranker")
    loaded = Ranker.load(tmp_path / "ranker")
    assert loaded.compiled is not None  # a plain LightGBM model: lleaves compiles it
    np.testing.assert_allclose(loaded.predict(rows), mean, rtol=0, atol=1e-12)
    assert average_rankers(members[:1]) is members[0]


def test_averaged_ranker_compiles_when_a_member_never_saw_a_feature_vary(tmp_path: Path) -> None:
    """A feature constant in one member's data ("none" in its model) but split on by another."""
    frames = [
        synthetic(150, 3).with_columns(pl.lit(0.0).alias("rare")),
        synthetic(150, 4).with_columns(pl.col("signal").alias("rare"), pl.col("noise").alias("signal")),
    ]
    members = [
        Ranker.fit(frame, None, ["signal", "rare"], RankingConfig(seed=seed), rounds=10)
        for seed, frame in enumerate(frames)
    ]
    assert members[0].booster.model_to_string().count(" none") == 1, "the premise: one 'none' feature"
    assert members[1].importance()["rare"]["gain"] > 0, "... on which the other member splits"
    averaged = average_rankers(members)
    averaged.save(tmp_path / "ranker")
    loaded = Ranker.load(tmp_path / "ranker")
    assert loaded.compiled is not None
    rows = synthetic(40, 9).with_columns(pl.col("signal").alias("rare"))
    mean = np.mean([member.predict(rows) for member in members], axis=0)
    np.testing.assert_allclose(loaded.predict(rows), mean, rtol=0, atol=1e-12)


def test_ndcg_known_answer() -> None:
    frame = pl.DataFrame(
        {"user_id": ["a", "a", "a", "b", "b"], "item_idx": [0, 1, 2, 0, 1], "label": [0, 1, 0, 1, 0]}
    )
    # a: the relevant item second (1 / log2(3)); b: first (1). Ties in score go to the smaller item index.
    assert ndcg_at(frame, np.asarray([0.9, 0.5, 0.1, 0.0, 0.0])) == pytest.approx((1 / np.log2(3) + 1) / 2)


def test_validation_falls_back_to_a_source_that_ranks_better_than_the_model() -> None:
    def with_ranks(frame: pl.DataFrame, known: bool) -> pl.DataFrame:
        frame = frame.with_columns(pl.int_range(pl.len()).over("user_id").alias("item_idx"))
        perfect = pl.col("label").rank("ordinal", descending=True).over("user_id").cast(pl.Float64)
        return frame.with_columns((perfect if known else pl.lit(None, pl.Float64)).alias("cand_good_rank"))

    # The model never saw the source's rank while training (all missing), so it ranks by noise.
    model = Ranker.fit(
        with_ranks(synthetic(100, 1), False), None, ["noise", "cand_good_rank"], RankingConfig(), rounds=5
    )
    valid = with_ranks(synthetic(40, 2), True).with_columns(
        pl.when(pl.col("label") == 0).then(None).otherwise(pl.col("cand_good_rank")).alias("cand_good_rank")
    )
    verdict = best_single_source(model, valid)
    assert verdict["fallback_source"] == "good"
    assert verdict["source_ndcg@10"]["good"] == pytest.approx(1.0)
    assert verdict["model_ndcg@10"] < 0.9

    model.info["fallback_source"] = "good"
    scores = model.predict(valid)
    ranked = valid.with_columns(pl.Series("score", scores)).sort("user_id", "score", descending=[False, True])
    first = ranked.group_by("user_id", maintain_order=True).head(1)
    users_with_positives = valid.filter(pl.col("label") > 0)["user_id"].unique()
    assert first.filter(pl.col("user_id").is_in(users_with_positives.implode()))["label"].min() > 0
    # Candidates the source did not retrieve come after every one it did, in the model's order.
    unretrieved = valid["cand_good_rank"].is_null().to_numpy()
    assert scores[unretrieved].max() < scores[~unretrieved].min()


def test_contributions_add_up_to_the_score_with_a_fallback_source() -> None:
    frame = synthetic(30, 5).with_columns(
        pl.when(pl.col("noise") > 0.5)
        .then(pl.int_range(1, pl.len() + 1).over("user_id"))
        .alias("cand_x_rank")
    )
    model = Ranker.fit(
        frame, None, ["signal", "noise", "cand_x_rank"], RankingConfig(min_child_samples=5), rounds=5
    )
    model.info["fallback_source"] = "x"
    contributions = model.contributions(frame)
    assert np.allclose(contributions.sum_horizontal().to_numpy(), model.predict(frame), rtol=0, atol=1e-6)
