"""Shards of a stage's work (users to score, items to embed), so that several workers can share it.

A sharded stage is a function over one shard, writing a *part* into the run's staging area, then a
cheap combine step that concatenates the parts in shard order into the stage's usual output. Shards
are contiguous slices of a fixed order (the catalog's rows, the users of ``Histories``), so the
combined output is the same for any number of shards (tested). ``recsys run`` runs every shard in
turn in one process (``n_shards`` may be 1), or ``scale.processes`` of them at once; the DAG maps one
task per shard (``scale.shards``), and under the CeleryExecutor the cluster's workers take them.

Each part is written like a stage (``RunStore.stage_output``: a temporary folder and a rename), so
a killed shard leaves nothing half-written and a retried one resumes; the combine step deletes the
parts once the stage's output is complete.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path

import pyarrow.parquet as pq

from recsys.artifacts import atomic_path
from recsys.run_context import RunContext

PART_INFIX = ".part-"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS")
"""Thread pools a shard process sizes from the environment when it starts (numpy's BLAS, polars)."""


def shard_bounds(n_rows: int, shard: int, n_shards: int) -> tuple[int, int]:
    """``[start, stop)`` of ``shard`` when ``n_rows`` are cut into ``n_shards`` near-equal slices."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be at least 1, got {n_shards}")
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in [0, {n_shards}), got {shard}")
    size, extra = divmod(n_rows, n_shards)
    start = shard * size + min(shard, extra)
    return start, start + size + (shard < extra)


def part_name(stage: str, shard: int, n_shards: int) -> str:
    """The part's folder in the run's staging area, beside the stages; the shard count is in the
    name, so parts of an earlier attempt with another count are never mixed in."""
    return f"{stage}{PART_INFIX}{shard:04d}-of-{n_shards:04d}"


def run_part(
    ctx: RunContext, stage: str, shard: int, n_shards: int, body: Callable[[Path], None], force: bool = False
) -> Path:
    """Run ``body(out)`` for one shard unless its part exists (or ``force``); the part's folder."""
    shard_bounds(0, shard, n_shards)  # validates shard and n_shards
    name = part_name(stage, shard, n_shards)
    done = ctx.store.stage_done(ctx.run_id, name)
    if done is not None and not force:
        return done
    with ctx.store.stage_output(ctx.run_id, name) as out:
        body(out)
    return ctx.store.staging_dir(ctx.run_id) / name


def run_shards(
    ctx: RunContext, shard_part: Callable[[RunContext, int, int], Path], processes: int
) -> list[Path]:
    """Every part of a sharded stage, ``shard_part(ctx, shard, n_shards)`` for each of the
    ``scale.shards`` shards, in shard order: in turn, or ``processes`` at a time in spawned processes
    sharing the machine's cores (each loads what its shard needs, so memory grows with them)."""
    n_shards = ctx.config.scale.shards
    workers = min(processes, n_shards)
    if workers <= 1:
        return [shard_part(ctx, shard, n_shards) for shard in range(n_shards)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    with (
        _environment(dict.fromkeys(THREAD_VARIABLES, str(threads))),
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        return list(pool.map(shard_part, repeat(ctx, n_shards), range(n_shards), repeat(n_shards)))


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in the environment that processes started inside the block inherit."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def drop_parts(ctx: RunContext, stage: str) -> None:
    """Delete a stage's parts once its combined output is written."""
    for part in ctx.store.staging_dir(ctx.run_id).glob(f"{stage}{PART_INFIX}*"):
        shutil.rmtree(part, ignore_errors=True)


def concat_parquet(parts: list[Path], out: Path) -> int:
    """Row groups of ``parts``, in order, into one Parquet file (memory: one row group); rows written."""
    rows = 0
    with atomic_path(out) as tmp:
        files = [pq.ParquetFile(path) for path in parts]
        # an empty part (a shard without users) may carry a placeholder schema: take one with rows
        schema = next((f.schema_arrow for f in files if f.metadata.num_rows), files[0].schema_arrow)
        writer = pq.ParquetWriter(str(tmp), schema)
        try:
            for source in files:
                for group in range(source.num_row_groups):
                    table = source.read_row_group(group)
                    writer.write_table(table.cast(writer.schema))
                    rows += table.num_rows
        finally:
            writer.close()
    return rows
