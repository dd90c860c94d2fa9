"""Batch recommendations: every user of a run (the pipeline's stage) or a list of users (the CLI).

Users are scored in chunks of ``recommend.chunk_users`` and streamed into one Parquet file, so
memory grows with the chunk and the catalog, never with the number of users; each user's answer
depends only on their own history, so the output is the same whatever the chunk size.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from rich.progress import Progress

from recsys.artifacts import RunStore, atomic_path
from recsys.assemble import load_recommender
from recsys.catalog import Histories
from recsys.config import AsOf, Config
from recsys.data.readers import read_table
from recsys.moments import Moments, per_user_moments
from recsys.recommend import RESULT_COLUMNS, Recommender


def load_users(path: Path) -> list[str]:
    """User ids from a Parquet/CSV/JSONL file with a ``user_id`` column."""
    frame = read_table(path)
    if "user_id" not in frame.columns:
        raise ValueError(f"{path}: no user_id column (found {', '.join(frame.columns)})")
    return frame["user_id"].cast(pl.String).drop_nulls().unique(maintain_order=True).to_list()


ORDER = "_order"


def write_recommendations(
    recommender: Recommender,
    histories: Histories,
    moments: Moments,
    k: int,
    chunk_users: int,
    out: Path,
    columns: list[str] = RESULT_COLUMNS,
) -> int:
    """Top ``k`` of every user of ``histories``, each as of their moment, chunk by chunk into ``out``
    (users in the order of ``histories``, ranks ascending); rows written."""
    rows = 0
    with atomic_path(out) as tmp, Progress(transient=True) as progress:
        task = progress.add_task("batch recommendations", total=len(histories))
        writer: pq.ParquetWriter | None = None
        try:
            for chunk in histories.chunks(chunk_users):
                order = pl.DataFrame({"user_id": chunk.user_ids, ORDER: range(len(chunk))})
                table = (
                    recommender.recommend(chunk, moments.of(chunk), k)
                    .join(order, on="user_id")
                    .sort(ORDER, "rank")
                    .select(columns)
                )
                arrow = table.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), arrow.schema)
                writer.write_table(arrow.cast(writer.schema))
                rows += table.height
                progress.advance(task, len(chunk))
            if writer is None:  # no users: an empty file with the columns
                pl.DataFrame(schema={name: pl.String for name in columns}).write_parquet(tmp)
        finally:
            if writer is not None:
                writer.close()
    return rows


def batch_moments(recommender: Recommender, events: pl.DataFrame, as_of: AsOf | None = None) -> Moments:
    """Where the batch job places a run's users in time: ``as_of`` (default: the run's
    ``recommend.as_of``) over the run's events."""
    config = recommender.config
    return Moments.of_events(events, per_user_moments(as_of or config.recommend.as_of, config.split.protocol))


def _run_dir(config: Config, run_id: str | None, runs: Path | None) -> Path:
    store = RunStore(runs or Path(config.pipeline.runs_dir))
    return store.run_dir(run_id) if run_id else store.current_dir()


def _histories(
    run_dir: Path, recommender: Recommender, user_ids: list[str], as_of: AsOf | None
) -> tuple[Histories, Moments]:
    """The users' histories in the run's data, and where the batch job places them in time."""
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet", columns=["user_id", "item_id", "ts"])
    histories = Histories.from_interactions(events, recommender.catalog, users=user_ids)
    return histories, batch_moments(recommender, events, as_of)


def recommend_users(
    config: Config,
    user_ids: list[str],
    k: int,
    run_id: str | None = None,
    runs: Path | None = None,
    as_of: AsOf | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(recommendations, items) for a few ``user_ids``, as the batch job would write them (``as_of``:
    see :func:`batch_moments`)."""
    run_dir = _run_dir(config, run_id, runs)
    recommender = load_recommender(run_dir)
    histories, moments = _histories(run_dir, recommender, user_ids, as_of)
    return recommender.recommend(histories, moments.of(histories), k), recommender.items


def write_batch(
    config: Config,
    user_ids: list[str],
    k: int,
    out: Path,
    run_id: str | None = None,
    runs: Path | None = None,
    as_of: AsOf | None = None,
) -> int:
    """Recommendations for many ``user_ids`` into ``out`` (Parquet), in chunks; rows written."""
    run_dir = _run_dir(config, run_id, runs)
    recommender = load_recommender(run_dir)
    histories, moments = _histories(run_dir, recommender, user_ids, as_of)
    return write_recommendations(recommender, histories, moments, k, config.recommend.chunk_users, out)
