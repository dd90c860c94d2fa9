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


class ServingSettings(BaseSettings):
    """``RECSYS_CONFIG``, ``RECSYS_RUNS_DIR``, ``RECSYS_API_TOKEN``, ``RECSYS_MAX_K``, ..."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    config: Path | None = None
    """YAML config (default: configs/default.yaml); gives the runs folder, the store and the limits."""
    runs_dir: Path | None = None
    """Runs folder whose promoted run is served (default: the config's pipeline.runs_dir)."""
    api_token: SecretStr | None = None
    """Bearer token for writes (events) and admin routes; without one they are refused."""
    max_k: int | None = Field(None, ge=1)
    max_batch_users: int | None = Field(None, ge=1)
    max_body_bytes: int | None = Field(None, ge=1)
    max_events: int | None = Field(None, ge=1)
    clock: Literal["events", "wall"] = "events"
    """The moment a recommendation describes: ``events``: just after the latest event known (of the
    run, or of the user: reproducible, equal to batch); ``wall``: the current time."""
    cache_size: int = Field(50_000, ge=0)
    """Ranked answers kept per worker, keyed by everything they depend on (user history, moment,
    store push, parameters), so a repeated request skips ranking; 0 disables."""
    sync_interval_s: float = Field(5.0, ge=0)
    """How often a worker checks whether another one loaded a newer run (0: never)."""

    def limits(self, serving: ServingConfig) -> Limits:
        return Limits(
            max_k=self.max_k or serving.max_k,
            max_batch_users=self.max_batch_users or serving.max_batch_users,
            max_body_bytes=self.max_body_bytes or serving.max_body_bytes,
            max_events=self.max_events or serving.max_events,
        )

    def runs(self, config: Config) -> Path:
        return self.runs_dir or Path(config.pipeline.runs_dir)
