"""Deployment settings of the HTTP service, from ``RECSYS_*`` environment variables.

Paths and the API token are settings (they differ per deployment and the token must never be
in a config file); limits default to the ``serving`` section of the config and can be
overridden here. ``RECSYS_CONFIG`` is the same variable :func:`recsys.config.load_config` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.config import Config, ServingConfig


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_k: int
    max_batch_users: int
    max_body_bytes: int
    max_events: int
    max_batch_items: int
    """Users × k of one batch request: the work it asks for, whatever the split."""


class ServingSettings(BaseSettings):
    """``RECSYS_CONFIG``, ``RECSYS_RUNS_DIR``, ``RECSYS_API_TOKEN``, ``RECSYS_READ_TOKEN``, ..."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    config: Path | None = None
    """YAML config (default: configs/default.yaml); gives the runs folder, the store and the limits."""
    runs_dir: Path | None = None
    """Runs folder whose promoted run is served (default: the config's pipeline.runs_dir)."""
    api_token: SecretStr | None = None
    """Admin bearer token: writes (events), admin routes, and reads that reveal a user's history
    (``explain=true``, ``exclude_seen=false``); without one those are refused. Grants every route."""
    read_token: SecretStr | None = None
    """When set, every ``/v1/*`` route needs it (or the admin token) as a bearer token; unset: reads
    of recommendations and similar items are open."""
    metrics_token: SecretStr | None = None
    """When set, ``/metrics`` needs it (or the admin token); unset: ``/metrics`` is open (it holds
    counts by route template, never ids)."""
    max_k: int | None = Field(None, ge=1)
    max_batch_users: int | None = Field(None, ge=1)
    max_body_bytes: int | None = Field(None, ge=1)
    max_events: int | None = Field(None, ge=1)
    max_batch_items: int = Field(20_000, ge=1)
    """Budget of one batch request: users × k (e.g. 1,000 users at k=20, or 100 at k=200)."""
    clock: Literal["events", "wall"] = "events"
    """The moment a recommendation describes: ``events``: just after the latest event known (of the
    run, or of the user: reproducible, equal to batch); ``wall``: the current time."""
    cache_size: int = Field(50_000, ge=0)
    """Ranked answers kept per worker, keyed by everything they depend on (user history, moment,
    store push, parameters), so a repeated request skips ranking; 0 disables."""
    cache_bytes: int = Field(64 * 2**20, ge=0)
    """Bytes the answer cache may hold per worker (answers are kept as their JSON; keys counted too):
    whichever of ``cache_size`` and this is reached first evicts the least recently used."""
    work_threads: int = Field(4, ge=1)
    """Threads per worker that rank, explain and read the store: the event loop never does that work,
    so ``/healthz`` and other requests answer while ranking queues."""
    work_timeout_s: float = Field(2.0, gt=0)
    """Longest one request's ranking or store read may take, waiting for a thread included; past it
    the answer is 503 with Retry-After (a store whose lock a writer holds answers this fast, not after
    the store's own busy timeout)."""
    query_rate_per_s: float = Field(2.0, gt=0)
    """Text queries (``q``, which run the encoder) per second per client address and worker."""
    query_burst: int = Field(10, ge=1)
    """Text queries a client may send at once before ``query_rate_per_s`` applies; over it: 429."""
    sync_interval_s: float = Field(5.0, ge=0)
    """How often a worker checks whether another one loaded a newer run (0: never)."""

    def limits(self, serving: ServingConfig) -> Limits:
        return Limits(
            max_k=self.max_k or serving.max_k,
            max_batch_users=self.max_batch_users or serving.max_batch_users,
            max_body_bytes=self.max_body_bytes or serving.max_body_bytes,
            max_events=self.max_events or serving.max_events,
            max_batch_items=self.max_batch_items,
        )

    def runs(self, config: Config) -> Path:
        return self.runs_dir or Path(config.pipeline.runs_dir)
