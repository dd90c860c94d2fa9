"""LightGBM lambdarank over candidate features; saved as LightGBM text, explained with pred_contrib."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.config import RankingConfig

if TYPE_CHECKING:
    import lightgbm

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
META_FILE = "ranker.json"
VERIFY_ROWS = 2048
COMPILED_ATOL = 1e-9
PARALLEL_ROWS = 16_384
"""Candidates from which the compiled trees score on every core (a batch chunk; a request uses one)."""
"""How far the compiled trees' scores may be from LightGBM's (they differ by float rounding, ~1e-15)."""
FALLBACK_FLOOR = -1e9
"""With a fallback source, candidates it did not retrieve score below every one it did."""


def feature_matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """Feature matrix with nulls as NaN (LightGBM treats NaN as missing)."""
    return frame.select([pl.col(name).cast(pl.Float32) for name in features]).to_numpy().astype(np.float32)


def lambdarank_params(config: RankingConfig, rounds: int | None = None) -> dict[str, Any]:
    """LightGBM's lambdarank settings of the ranker, in one process or on a Dask cluster."""
    return {
        "objective": "lambdarank",
        "n_estimators": rounds or config.n_estimators,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "random_state": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


@dataclass
class EarlyStopping:
    """Stop when the mean validation NDCG@10 of the last ``window`` rounds has not risen for ``patience``
    rounds, and keep the trees up to where that mean peaked.

    One round's NDCG@10 over a few hundred label users jumps by more than many rounds of boosting
    gain, and LightGBM's rule (``window`` 1) keeps the round that scored best alone. With the category
    source on, the dev per-user cut's shipped ranker stopped at 76 trees a member (NDCG@10 0.171) where
    the same bench's pretrained-text and no-text variants kept 322 and 408 (0.181, 0.178); over a window
    of 50 rounds it kept 238 (0.183). A window's mean does not peak on one round's luck
    (``ranking.early_stopping_window``).
    """

    patience: int
    window: int
    scores: list[float] = field(default_factory=list)
    best_iteration: int = 0
    """Trees kept (0 before the first round)."""
    best_mean: float = -np.inf

    def update(self, score: float) -> bool:
        """Record the next round's validation score; True when training should stop."""
        self.scores.append(score)
        mean = float(np.mean(self.scores[-self.window :]))
        if mean > self.best_mean:
            self.best_mean, self.best_iteration = mean, len(self.scores)
        return len(self.scores) - self.best_iteration >= self.patience

    @property
    def best_score(self) -> float:
        """The validation NDCG@10 of the trees kept (that round's own, not the window's mean)."""
        return self.scores[self.best_iteration - 1]


def stopping_callback(rule: EarlyStopping) -> Callable[[Any], None]:
    """A LightGBM callback that ends training by ``rule`` (at the last round, too, with its choice)."""
    import lightgbm as lgb

    def callback(env: Any) -> None:
        result = env.evaluation_result_list[0]
        if rule.update(result.metric_value) or env.iteration + 1 >= env.end_iteration:
            best = type(result)(result.dataset_name, result.metric_name, rule.best_score, result.maximize)
            raise lgb.callback.EarlyStopException(rule.best_iteration - 1, [best])

    callback.order = 30  # type: ignore[attr-defined]  # where LightGBM's own early stopping runs
    return callback


def ndcg_at(frame: pl.DataFrame, scores: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over users of labelled candidate rows ranked by ``scores`` (ties: item index),
    with LightGBM's gain 2^label - 1, so a model and a single source are judged alike."""
    ranked = (
        frame.select("user_id", "item_idx", "label")
        .with_columns(pl.Series("score", scores, dtype=pl.Float64))
        .sort(["user_id", "score", "item_idx"], descending=[False, True, False])
        .with_columns(
            gain=2.0 ** pl.col("label").cast(pl.Float64) - 1.0,
            position=pl.int_range(1, pl.len() + 1).over("user_id"),
            ideal=(2.0 ** pl.col("label").cast(pl.Float64) - 1.0).sort(descending=True).over("user_id"),
        )
        .filter(pl.col("position") <= k)
        .with_columns(discount=1.0 / (pl.col("position") + 1).cast(pl.Float64).log(2))
        .group_by("user_id")
        .agg(
            dcg=(pl.col("gain") * pl.col("discount")).sum(),
            idcg=(pl.col("ideal") * pl.col("discount")).sum(),
        )
        .filter(pl.col("idcg") > 0)
    )
    return float(np.mean((ranked["dcg"] / ranked["idcg"]).to_numpy())) if ranked.height else 0.0


def split_values(booster: lightgbm.Booster, rows: int, seed: int = 0) -> np.ndarray:
    """Rows whose values sit on and beside the model's split thresholds, at zero and missing: where two
    implementations of the same trees would part ways, if they did."""
    thresholds: list[list[float]] = [[0.0] for _ in range(booster.num_feature())]

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            if isinstance(node["threshold"], int | float):
                thresholds[node["split_feature"]].append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    rng = np.random.default_rng(seed)
    out = np.empty((rows, len(thresholds)), dtype=np.float64)
    for column, values in enumerate(thresholds):
        pool = np.asarray(values)
        pool = np.concatenate([pool, np.nextafter(pool, np.inf), np.nextafter(pool, -np.inf), [np.nan]])
        out[:, column] = rng.choice(pool, rows)
    return out


def compile_trees(booster: lightgbm.Booster) -> Callable[[np.ndarray], np.ndarray] | None:
    """The booster's trees compiled to native code in memory by lleaves (LLVM), or None where that is not
    possible (lleaves missing, a model it cannot compile, or one it would score differently from
    LightGBM on :func:`split_values`): then LightGBM predicts.

    A request scores a few hundred candidates, where LightGBM's per-call and per-row overhead costs far
    more than the trees themselves; compiled, the same scores take a tenth of the time or less.
    Compiling takes about a second per hundred trees, once per load; nothing compiled is written to
    disk or loaded from it.
    """
    try:
        import lleaves

        with tempfile.TemporaryDirectory(prefix="recsys-ranker-") as folder:
            path = Path(folder) / MODEL_FILE
            booster.save_model(str(path), num_iteration=booster.best_iteration or None)
            model = lleaves.Model(model_file=str(path))
            model.compile()
    except Exception as error:  # whatever the reason, LightGBM's own predictor still answers
        log.warning("ranker: no compiled predictor (%s: %s); LightGBM predicts", type(error).__name__, error)
        return None

    def predict(matrix: np.ndarray) -> np.ndarray:
        # Rows are scored independently: threads change the speed of a batch, never its scores.
        threads = 1 if len(matrix) < PARALLEL_ROWS else os.cpu_count() or 1
        return np.asarray(model.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=threads))

    sample = split_values(booster, VERIFY_ROWS)
    expected = booster.predict(sample, num_threads=1, num_iteration=booster.best_iteration or None)
    if not np.allclose(predict(sample), expected, rtol=0.0, atol=COMPILED_ATOL):
        log.warning("ranker: the compiled trees score differently from LightGBM; LightGBM predicts")
        return None
    return predict


def group_sizes(frame: pl.DataFrame) -> np.ndarray:
    """Group sizes of consecutive rows per user (the frame must be sorted by user)."""
    return frame.group_by("user_id", maintain_order=True).len()["len"].to_numpy()


_TREE_HEADER = re.compile(r"^Tree=\d+\n", flags=re.MULTILINE)
_SCALED_LINES = re.compile(r"^(leaf_value|internal_value)=(.*)$", flags=re.MULTILINE)


def averaged_booster(boosters: Sequence[lightgbm.Booster]) -> lightgbm.Booster:
    """One LightGBM model whose score is the mean of ``boosters``' scores: their trees one after the
    other, every leaf (and node) value divided by their number.

    LightGBM can append one model's trees to another's but not average them, so the model text is
    joined here. What comes out is a plain model: saved, compiled and explained like any other
    (SHAP values are linear in the leaves: the mean of the members' contributions).
    """
    import lightgbm as lgb

    if len(boosters) == 1:
        return boosters[0]
    share = 1.0 / len(boosters)

    def scaled(match: re.Match[str]) -> str:
        values = " ".join(repr(float(value) * share) for value in match.group(2).split())
        return f"{match.group(1)}={values}"

    texts = [booster.model_to_string() for booster in boosters]
    first_tree = _TREE_HEADER.search(texts[0])
    assert first_tree is not None, "a model without trees"
    # tree_sizes lets LightGBM parse trees in parallel; without it, it reads them in turn.
    header = re.sub(r"^tree_sizes=.*\n", "", texts[0][: first_tree.start()], flags=re.MULTILINE)
    header = _FEATURE_INFOS.sub(lambda _: f"feature_infos={_merged_feature_infos(texts)}", header)
    trees = [tree for text in texts for tree in _TREE_HEADER.split(text[: text.index("end of trees")])[1:]]
    body = "".join(f"Tree={number}\n{_SCALED_LINES.sub(scaled, tree)}" for number, tree in enumerate(trees))
    footer = texts[0][texts[0].index("end of trees") :]
    return lgb.Booster(model_str=header + body + footer)


_FEATURE_INFOS = re.compile(r"^feature_infos=(.*)$", flags=re.MULTILINE)


def _merged_feature_infos(texts: Sequence[str]) -> str:
    """Each feature's value range over all members' training data.

    Members bin their features on their own seeded samples, so a rare value (a seen item among the
    candidates) may leave one member's feature "none" (constant) while another splits on it; lleaves
    takes a "none" feature for a categorical one and cannot compile the other's numeric splits.
    """
    members = [match.group(1).split() for text in texts if (match := _FEATURE_INFOS.search(text))]
    merged = []
    for infos in zip(*members, strict=True):
        ranges = [info[1:-1].split(":") for info in infos if info.startswith("[")]
        if not ranges:
            merged.append(next((info for info in infos if info != "none"), "none"))
            continue
        low = min((bounds[0] for bounds in ranges), key=float)
        high = max((bounds[1] for bounds in ranges), key=float)
        merged.append(f"[{low}:{high}]")
    return " ".join(merged)


def average_rankers(members: Sequence[Ranker]) -> Ranker:
    """One ranker scoring the mean of ``members``' scores (:func:`averaged_booster`); its info keeps
    each member's (``members``) beside the rows they all trained on. One member: itself."""
    if len(members) == 1:
        return members[0]
    features = members[0].features
    assert all(member.features == features for member in members), "members of other features"
    booster = averaged_booster([member.booster for member in members])
    info = {
        "train_rows": members[0].info["train_rows"],
        "train_groups": members[0].info["train_groups"],
        "best_iteration": booster.current_iteration(),
        "members": [member.info for member in members],
    }
    return Ranker(booster, features, info)


@dataclass
class Ranker:
    booster: lightgbm.Booster
    features: list[str]
    info: dict[str, Any]
    compiled: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)
    """The trees as native code (:func:`compile_trees`; set by :meth:`load`); None: LightGBM predicts."""

    @classmethod
    def fit(
        cls,
        train: pl.DataFrame,
        valid: pl.DataFrame | None,
        features: list[str],
        config: RankingConfig,
        rounds: int | None = None,
    ) -> Ranker:
        """Lambdarank with NDCG@10, early-stopped on a later time-split validation set.

        Frames hold one group per user (rows sorted by user) and a graded ``label`` column.
        Without ``valid``, exactly ``rounds`` trees are grown (a refit once early stopping
        has chosen how many).
        """
        import lightgbm as lgb

        model = lgb.LGBMRanker(**lambdarank_params(config, rounds), n_jobs=config.threads)
        info: dict[str, Any] = {"train_rows": train.height, "train_groups": len(group_sizes(train))}
        validation: dict[str, Any] = {}
        if valid is not None:
            validation = {
                "eval_X": (feature_matrix(valid, features),),
                "eval_y": (valid["label"].to_numpy(),),
                "eval_group": [group_sizes(valid)],
                "eval_at": [10],
                "callbacks": [
                    stopping_callback(
                        EarlyStopping(config.early_stopping_rounds, config.early_stopping_window)
                    )
                ],
            }
        model.fit(
            feature_matrix(train, features),
            train["label"].to_numpy(),
            group=group_sizes(train),
            feature_name=features,
            **validation,
        )
        if valid is None:
            return cls(
                model.booster_, features, {**info, "best_iteration": model.booster_.current_iteration()}
            )
        booster = model.booster_
        info |= {
            "best_iteration": int(model.best_iteration_ or booster.current_iteration()),
            "valid_ndcg@10": float(model.best_score_["valid_0"]["ndcg@10"]),
            "valid_rows": valid.height,
        }
        return cls(booster, features, info)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return self.predict_matrix(feature_matrix(frame, self.features))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of candidate rows (columns in ``features`` order): batch and online both come here,
        to the compiled trees when there are some (equal to LightGBM's within 1e-12).

        With a ``fallback_source`` (validation found that source alone ranks better than the
        model), candidates are ordered by that source's rank, and those it did not retrieve
        follow in the model's order.
        """
        if self.compiled is not None and len(matrix):
            scores = self.compiled(matrix)
        else:
            scores = np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)
        fallback = self.info.get("fallback_source")
        if fallback is None or not len(scores):
            return scores
        rank = matrix[:, self.features.index(f"cand_{fallback}_rank")].astype(np.float64)
        return np.where(np.isnan(rank), FALLBACK_FLOOR + scores, -rank)

    def contributions(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Per-feature contributions (SHAP values); each row plus ``bias`` sums to the score.

        With a fallback source, a candidate it retrieved is scored by its rank alone, so the whole
        score is that rank feature's; one it did not keeps the model's contributions, and the floor
        that puts it below the others is the rank feature's (it is missing).
        """
        matrix = feature_matrix(frame, self.features)
        values = np.asarray(self.booster.predict(matrix, pred_contrib=True, num_threads=1), dtype=np.float64)
        fallback = self.info.get("fallback_source")
        if fallback is not None and len(values):
            column = self.features.index(f"cand_{fallback}_rank")
            rank = matrix[:, column].astype(np.float64)
            retrieved = ~np.isnan(rank)
            values[retrieved] = 0.0
            values[retrieved, column] = -rank[retrieved]
            values[~retrieved, column] += FALLBACK_FLOOR
        return pl.DataFrame(values, schema=[*self.features, "bias"], orient="row")

    def importance(self) -> dict[str, dict[str, float]]:
        gain = self.booster.feature_importance("gain")
        split = self.booster.feature_importance("split")
        return {
            name: {"gain": float(g), "split": float(s)}
            for name, g, s in zip(self.features, gain, split, strict=True)
        }

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE), num_iteration=self.booster.best_iteration or None)
        meta = {"features": self.features, "info": self.info, "importance": self.importance()}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Ranker:
        import lightgbm as lgb

        meta = json.loads((folder / META_FILE).read_text())
        booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
        return cls(booster, list(meta["features"]), dict(meta["info"]), compile_trees(booster))
