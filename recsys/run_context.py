"""Where a run reads its input and writes its stages, and readers of finished stages' outputs.

Shared by the pipeline's stages, the evaluation, :mod:`recsys.assemble` and inspection, so
none of them needs to import another to find a run's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from recsys.artifacts import RunStore, run_id_for
from recsys.config import Config

EVALUATED = "evaluated"
"""Sub-folder of the encoder, embeddings, index and ranker stages holding the evaluated recipe's
artifacts (fitted on data that ends before the evaluation window); the stage folder itself holds
what the run ships (refitted on all data)."""


@dataclass
class RunContext:
    """Where a run reads its input and writes its stages."""

    config: Config
    store: RunStore
    run_id: str
    data_dir: Path
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: Config,
        data_dir: Path | None = None,
        runs_dir: Path | None = None,
        run_id: str | None = None,
    ) -> RunContext:
        return cls(
            config=config,
            store=RunStore(runs_dir or Path(config.pipeline.runs_dir)),
            run_id=run_id or run_id_for(),
            data_dir=Path(data_dir or config.pipeline.data_dir),
        )

    def path(self, stage: str) -> Path:
        """Output of a finished stage (staged, or already published)."""
        for candidate in (self.store.stage_done(self.run_id, stage), self.store.run_dir(self.run_id) / stage):
            if candidate is not None and candidate.exists():
                return candidate
        raise FileNotFoundError(f"run {self.run_id}: stage '{stage}' has not run yet")

    def artifact(self, stage: str, evaluated: bool) -> Path:
        """The shipped artifact of ``stage``, or the evaluated one (runs written before the
        split between the two hold only one, which served both purposes)."""
        folder = self.path(stage)
        if evaluated and (folder / EVALUATED).exists():
            return folder / EVALUATED
        return folder


def read_items(ctx: RunContext) -> pl.DataFrame:
    return pl.read_parquet(ctx.path("data") / "items.parquet")


def read_events(ctx: RunContext, part: str | None = None) -> pl.DataFrame:
    """All validated events, or one part of the split stage (``train``, ``fit``, ``ship_fit``...)."""
    if part is None:
        return pl.read_parquet(ctx.path("data") / "interactions.parquet")
    return pl.read_parquet(ctx.path("split") / f"{part}.parquet")


def read_vectors(folder: Path) -> np.ndarray:
    from recsys.embeddings import ItemEmbeddings

    return ItemEmbeddings.load(folder / "items.npz").vectors
