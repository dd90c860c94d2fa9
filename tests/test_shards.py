"""Sharded stages: any shard count gives the unsharded output (embeddings, batch recommendations)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys import pipeline
from recsys.config import load_config
from recsys.data.demo import DemoSpec, write_demo
from recsys.embeddings import ItemEmbeddings
from recsys.run_context import RunContext, read_events
from recsys.shards import PART_INFIX, concat_parquet, shard_bounds

TINY_CONFIG = Path(__file__).parent / "dags" / "tiny_config.yaml"
SHARED_STAGES = ("data", "split", "features", "encoder", "index", "retrieval", "ranker")


@pytest.mark.parametrize("n_rows", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 8])
def test_shards_cover_every_row_once_in_order(n_rows: int, n_shards: int) -> None:
    bounds = [shard_bounds(n_rows, shard, n_shards) for shard in range(n_shards)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n_rows
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("shard", "n_shards"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_outside_the_count_is_refused(shard: int, n_shards: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        shard_bounds(10, shard, n_shards)


def test_concat_keeps_part_order_and_skips_an_empty_placeholder(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    pl.DataFrame(schema={"user_id": pl.String, "rank": pl.String}).write_parquet(empty)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pl.DataFrame({"user_id": ["u1", "u2"], "rank": [1, 2]}).write_parquet(first)
    pl.DataFrame({"user_id": ["u3"], "rank": [1]}).write_parquet(second)
    out = tmp_path / "all.parquet"
    assert concat_parquet([empty, first, empty, second], out) == 3
    expected = pl.DataFrame({"user_id": ["u1", "u2", "u3"], "rank": [1, 2, 1]})
    assert_frame_equal(pl.read_parquet(out), expected)


def _share_stages(source: RunContext, target: RunContext, stages: tuple[str, ...]) -> None:
    """``target`` reuses ``source``'s finished stages (linked, not copied)."""
    for stage in stages:
        link = target.store.staging_dir(target.run_id) / stage
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source.path(stage))


@pytest.mark.slow
@pytest.mark.integration
def test_two_shards_give_the_unsharded_embeddings_and_recommendations(tmp_path: Path) -> None:
    write_demo(tmp_path / "data", DemoSpec(users=60, items=80, events=1500, topics=4, seed=11))
    config = load_config(TINY_CONFIG, environ={})
    # fp32 torch: the int8 ONNX encoder quantizes activations per batch, and batches follow the texts
    # encoded together, so its vectors move (cosine > 0.99) with whatever shares their batch.
    config.embeddings.backend = "torch"
    config.encoder.fine_tune = False  # the base encoder as it is: what is sharded is the encoding
    one = RunContext.create(config, tmp_path / "data", tmp_path / "runs", "one")
    for stage in pipeline.PIPELINE:
        if stage is not pipeline.evaluation:
            stage(one)

    sharded = config.model_copy(deep=True)
    sharded.scale.shards = 2
    two = RunContext.create(sharded, tmp_path / "data", tmp_path / "runs", "two")
    _share_stages(one, two, SHARED_STAGES)  # the same inputs: only the sharded stage runs again
    # One shard first (as a worker would), then the combine step runs the other and concatenates.
    part = pipeline.embed_shard(two, 1)
    assert len(ItemEmbeddings.load(part / "items.npz")) == 40
    pipeline.embeddings(two)
    for folder in ("evaluated", ""):
        unsharded = ItemEmbeddings.load(one.path("embeddings") / folder / "items.npz")
        combined = ItemEmbeddings.load(two.path("embeddings") / folder / "items.npz")
        np.testing.assert_array_equal(combined.ids, unsharded.ids)
        np.testing.assert_array_equal(combined.vectors, unsharded.vectors)

    # Batch recommendations over the same vectors: identical, row for row.
    three = RunContext.create(sharded, tmp_path / "data", tmp_path / "runs", "three")
    _share_stages(one, three, (*SHARED_STAGES, "embeddings"))
    pipeline.recommend_shard(three, 0)
    pipeline.recommendations(three)
    recs = "recommendations/recommendations.parquet"
    sharded_recs = pl.read_parquet(three.store.staging_dir("three") / recs)
    assert_frame_equal(sharded_recs, pl.read_parquet(one.store.staging_dir("one") / recs))
    assert sharded_recs["user_id"].n_unique() == read_events(one)["user_id"].n_unique()
    # Both shards at once, in two processes: the same file again.
    parallel = sharded.model_copy(deep=True)
    parallel.scale.processes = 2
    four = RunContext.create(parallel, tmp_path / "data", tmp_path / "runs", "four")
    _share_stages(one, four, (*SHARED_STAGES, "embeddings"))
    pipeline.recommendations(four)
    assert_frame_equal(pl.read_parquet(four.store.staging_dir("four") / recs), sharded_recs)
    for ctx in (two, three, four):  # parts go once combined
        assert not list(ctx.store.staging_dir(ctx.run_id).glob(f"*{PART_INFIX}*"))
