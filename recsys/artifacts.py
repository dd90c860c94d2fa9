"""Runs on disk: atomic writes, run directories, manifests, promotion and rollback.

Layout under the runs root::

    runs/
      .staging/<run_id>/<stage>/...   work in progress (never served, never listed)
      <run_id>/manifest.json           a finished, self-describing run
      registry.json                    promotion history; the last entry is current
      CURRENT                          the promoted run id (one line, for humans and shell)

Everything is written to a temporary name and renamed, so a process killed mid-write
leaves either the old state or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

MANIFEST = "manifest.json"
REGISTRY = "registry.json"
CURRENT = "CURRENT"
STAGING = ".staging"


class RunError(RuntimeError):
    """A run is missing, unfinished or cannot be promoted; the message says which."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(frame: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def run_id_for(logical_date: datetime | None = None) -> str:
    """Run ids sort by time; the same logical date always gives the same id (idempotent re-runs)."""
    moment = logical_date or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("run-%Y%m%dT%H%M%SZ")


class RunStore:
    """The runs root: finished runs, staging areas and the promotion registry."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths -----------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def staging_dir(self, run_id: str) -> Path:
        return self.root / STAGING / run_id

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / MANIFEST).exists()

    # -- writing ---------------------------------------------------------------
    @contextmanager
    def stage_output(self, run_id: str, name: str) -> Iterator[Path]:
        """A fresh temp folder that becomes ``.staging/<run_id>/<name>`` only if the block succeeds."""
        final = self.staging_dir(run_id) / name
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
        try:
            yield tmp
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def stage_done(self, run_id: str, name: str) -> Path | None:
        """The finished output of a stage, or None (half-written temp folders do not count)."""
        path = self.staging_dir(run_id) / name
        return path if path.is_dir() else None

    def publish(self, run_id: str, manifest: dict[str, Any]) -> Path:
        """Write the manifest into staging and move the whole run into place in one rename."""
        staging = self.staging_dir(run_id)
        if not staging.is_dir():
            raise RunError(f"run {run_id}: nothing staged under {staging}")
        for leftover in staging.glob(".*"):  # temp folders of killed stages
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        atomic_write_json(staging / MANIFEST, {**manifest, "run_id": run_id})
        final = self.run_dir(run_id)
        if final.exists():  # re-run of the same logical date: replace, never duplicate
            trash = self.root / STAGING / f".replaced-{run_id}-{time.time_ns()}"
            os.replace(final, trash)
            os.replace(staging, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, final)
        return final

    def update_manifest(self, run_id: str, **fields: Any) -> dict[str, Any]:
        manifest = {**self.manifest(run_id), **fields}
        atomic_write_json(self.run_dir(run_id) / MANIFEST, manifest)
        return manifest

    # -- reading ---------------------------------------------------------------
    def manifest(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / MANIFEST
        if not path.exists():
            raise RunError(f"run {run_id} not found under {self.root} (no {MANIFEST})")
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def list_runs(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        runs = [
            self.manifest(path.name) for path in sorted(self.root.iterdir()) if (path / MANIFEST).exists()
        ]
        current = self.current()
        for manifest in runs:
            manifest["current"] = manifest["run_id"] == current
        return runs

    def _history(self) -> list[dict[str, Any]]:
        path = self.root / REGISTRY
        if not path.exists():
            return []
        history: list[dict[str, Any]] = json.loads(path.read_text())["history"]
        return history

    def current(self) -> str | None:
        history = self._history()
        return str(history[-1]["run_id"]) if history else None

    def current_dir(self) -> Path:
        run_id = self.current()
        if run_id is None:
            raise RunError(f"no promoted run under {self.root}; run `recsys run` first")
        return self.run_dir(run_id)

    # -- promotion -------------------------------------------------------------
    def promote(self, run_id: str, reason: str = "manual") -> None:
        if not self.exists(run_id):
            raise RunError(f"run {run_id} not found under {self.root}")
        history = self._history()
        history.append({"run_id": run_id, "at": datetime.now(UTC).isoformat(), "reason": reason})
        atomic_write_json(self.root / REGISTRY, {"history": history})
        atomic_write_text(self.root / CURRENT, run_id + "\n")
        self.update_manifest(run_id, status="promoted")

    def rollback(self) -> str:
        """Make the run promoted before the current one current again.

        Runs already rolled back are skipped, so repeated rollbacks walk further back in time
        instead of bouncing between the last two runs.
        """
        history = self._history()
        current = self.current()
        previous = [
            entry["run_id"]
            for entry in history
            if entry["run_id"] != current
            and self.exists(entry["run_id"])
            and self.manifest(entry["run_id"]).get("status") != "rolled_back"
        ]
        if current is None or not previous:
            raise RunError("nothing to roll back to: fewer than two promoted runs")
        target = str(previous[-1])
        self.update_manifest(current, status="rolled_back")
        self.promote(target, reason=f"rollback from {current}")
        return target
