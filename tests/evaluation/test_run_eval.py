"""The evaluation stage's own inputs: the pretrained-text baseline's catalog vectors, the users' moments."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys import pipeline
from recsys.catalog import ItemCatalog
from recsys.config import load_config
from recsys.embeddings import encode_texts, item_texts
from recsys.encoder.model import load_encoder
from recsys.encoder.onnx_export import has_variant
from recsys.evaluation.protocol import make_split
from recsys.evaluation.run_eval import pretrained_vectors, split_moments
from recsys.moments import Moments
from recsys.run_context import RunContext, read_items

TINY_CONFIG = Path(__file__).parents[1] / "dags" / "tiny_config.yaml"


def test_pretrained_vectors_are_encoded_as_the_run_encodes_and_cached(
    tiny_demo_dir: Path, tmp_path: Path
) -> None:
    config = load_config(TINY_CONFIG, environ={})
    config.embeddings.device = "cpu"
    ctx = RunContext.create(config, tiny_demo_dir, tmp_path / "runs", "r")
    pipeline.validate(ctx)
    vectors = pretrained_vectors(ctx)

    cache = ctx.store.root / ".cache"
    (export,) = cache.glob("pretrained-onnx-*")
    assert has_variant(export, config.embeddings.backend)  # the base model's int8 export, kept
    texts = item_texts(read_items(ctx), config.embeddings.template)
    fp32 = encode_texts(load_encoder(config.encoder.base_model, "cpu"), texts, config.embeddings)
    cosine = (vectors * fp32).sum(axis=1)
    assert vectors.shape == fp32.shape and cosine.min() > 0.95 and cosine.mean() > 0.98
    assert not np.array_equal(vectors, fp32)  # int8, not torch

    shutil.rmtree(export)
    np.testing.assert_array_equal(pretrained_vectors(ctx), vectors)
    assert not export.exists()  # read back from the cache: nothing exported or encoded again


def test_pretrained_vectors_encode_only_items_whose_text_changed(tiny_demo_dir: Path, tmp_path: Path) -> None:
    config = load_config(TINY_CONFIG, environ={})
    config.embeddings.device = "cpu"
    first = RunContext.create(config, tiny_demo_dir, tmp_path / "runs", "first")
    pipeline.validate(first)
    before = pretrained_vectors(first)

    changed = tmp_path / "changed"
    shutil.copytree(tiny_demo_dir, changed)
    items = pl.read_parquet(changed / "items.parquet")
    items.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("A film about lighthouses"))
        .otherwise("title")
        .alias("title")
    ).write_parquet(changed / "items.parquet")
    second = RunContext.create(config, changed, tmp_path / "runs", "second")
    pipeline.validate(second)
    after = pretrained_vectors(second)

    texts = item_texts(read_items(second), config.embeddings.template)
    (row,) = np.flatnonzero(
        np.asarray(texts) != np.asarray(item_texts(read_items(first), config.embeddings.template))
    )
    others = np.arange(len(before)) != row
    np.testing.assert_array_equal(after[others], before[others])  # read from the cache
    fp32 = encode_texts(load_encoder(config.encoder.base_model, "cpu"), [texts[row]], config.embeddings)[0]
    assert float(after[row] @ fp32) > 0.95 and float(after[row] @ before[row]) < 0.9  # the new text's vector


@pytest.mark.parametrize("protocol", ["per_user", "global"])
def test_test_users_are_placed_as_the_batch_job_places_them_and_never_after_their_future(
    tiny_demo: tuple[pl.DataFrame, pl.DataFrame], protocol: str
) -> None:
    items, interactions = tiny_demo
    split = make_split(interactions, ItemCatalog.from_items(items), protocol)  # type: ignore[arg-type]
    moments = split_moments(split, "auto")
    first_test = dict(split.test.group_by("user_id").agg(pl.col("ts").min()).iter_rows())
    assert all(moments.moments[user] <= first_test[user] for user in split.histories.user_ids)
    if protocol == "global":  # everyone at the cut, as the nightly job's batch describes them
        assert set(moments.moments.values()) == {split.cutoff}
    else:  # each after their own latest training event, on the grid of the training data
        placed = Moments.of_events(split.train, per_user=True).of(split.histories)
        assert dict(moments.moments) == dict(placed.moments)
        assert placed.item_grid is not None and np.array_equal(moments.item_grid, placed.item_grid)
        assert len(set(moments.moments.values())) > 1
    now = split.cutoff or int(split.train["ts"].max()) + 1  # "now": the cut, or the training data's end
    users = split.histories.user_ids
    assert dict(split_moments(split, "now").moments) == {user: min(now, first_test[user]) for user in users}
    if protocol == "per_user":  # the training data's end lies after test users' futures: not there
        assert any(first_test[user] < now for user in users)
