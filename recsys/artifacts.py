"""Runs on disk: atomic writes, run directories, manifests, promotion, rollback and retention.

Layout under the runs root::

    runs/
      .staging/<run_id>/<stage>/...   work in progress (never served, never listed)
      .locks/registry.lock             held by everything that changes the registry or moves runs
      .locks/runs/<run_id>.lock        held by the process writing that run
      <run_id>/manifest.json           a finished, self-describing run
      quarantine/<run_id>/             bad input rows of that run (kept when validation fails)
      registry.json                    promotion history; the last entry is current
      CURRENT                          the promoted run id (one line, for humans and shell)

Everything is written to a temporary name, flushed to disk and renamed, and the folder holding
it is flushed too, so a process killed (or a machine losing power) mid-write leaves either the
old state or the new one, never half of either. Run ids become folder names, so every id that
reaches a path is checked by :func:`validate_run_id` first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from filelock import FileLock, Timeout

MANIFEST = "manifest.json"
REGISTRY = "registry.json"
CURRENT = "CURRENT"
STAGING = ".staging"
LOCKS = ".locks"
QUARANTINE = "quarantine"
REGISTRY_LOCK_TIMEOUT_S = 120.0
"""How long a registry change waits for another one; changes take milliseconds, so this is a stuck holder."""

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RESERVED = frozenset({MANIFEST, REGISTRY, CURRENT, QUARANTINE})
_TRASH_PREFIXES = (".replaced-", ".pruned-")


class RunError(RuntimeError):
    """A run is missing, unfinished or cannot be promoted; the message says which."""


class InvalidRunIdError(RunError, ValueError):
    """A run id that cannot be a folder name under the runs root (a path, a traversal, a control char)."""


class RunBusyError(RunError):
    """Another process holds the lock this operation needs."""


def validate_run_id(run_id: object) -> str:
    """``run_id`` if it is a safe folder name: 1-128 of ``A-Z a-z 0-9 . _ -``, not starting with '.'.

    This rules out '/', '\\', '..', absolute paths, control characters and whitespace, so a run id
    from the command line, the registry or a reload can never name a folder outside the runs root.
    """
    if (
        isinstance(run_id, str)
        and _RUN_ID.fullmatch(run_id)
        and ".." not in run_id
        and run_id not in _RESERVED
    ):
        return run_id
    shown = ascii(run_id) if len(ascii(run_id)) <= 80 else ascii(run_id)[:77] + "..."
    raise InvalidRunIdError(
        f"invalid run id {shown}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter "
        "or digit (no '/', '..', absolute paths, spaces or control characters)"
    )


def _is_run_id(name: str) -> bool:
    try:
        validate_run_id(name)
    except InvalidRunIdError:
        return False
    return True


# -- durable files ---------------------------------------------------------------------------------
def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    _fsync(Path(path), os.O_RDONLY | os.O_DIRECTORY)


def fsync_tree(root: str | Path) -> None:
    """Flush every file and folder under ``root`` (before the rename that publishes it)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                _fsync(path)
        fsync_dir(folder)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it replaces ``path`` in one durable rename.

    The temporary file is flushed before the rename and the folder after it, so after a crash
    ``path`` holds the old content or the whole new content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(path: str | Path) -> None:
    """Delete temporary siblings of ``path`` left by writers killed mid-write.

    Call only while no other process can be writing ``path`` (under the lock that guards it).
    """
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


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
    """The runs root: finished runs, staging areas, the promotion registry and their locks.

    Every change to the registry or to which runs exist (publish, promote, rollback, prune)
    runs under one file lock, so concurrent commands and DAG tasks never lose an entry and
    ``registry.json`` and ``CURRENT`` never disagree. The lock is reentrant within a thread:
    a caller may hold :meth:`registry_lock` around several calls (gate, publish, promote).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths -----------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / validate_run_id(run_id)

    def staging_dir(self, run_id: str) -> Path:
        return self.root / STAGING / validate_run_id(run_id)

    def quarantine_dir(self, run_id: str) -> Path:
        """Where a run's bad input rows go: outside staging, so they outlive a failed validation."""
        return self.root / QUARANTINE / validate_run_id(run_id)

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / MANIFEST).exists()

    # -- locks -----------------------------------------------------------------
    def _lock_file(self, *parts: str) -> Path:
        path = Path(os.path.abspath(self.root / LOCKS / Path(*parts)))
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def registry_lock(self, timeout: float = REGISTRY_LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the lock of everything that changes the registry or moves runs (reentrant per thread)."""
        path = self._lock_file("registry.lock")
        busy = (
            f"{self.root}: the registry is locked by another process for more than {timeout:.0f}s "
            f"({path}); is a `recsys run` or `recsys runs` command stuck?"
        )
        # one instance per file: nested use in a thread re-enters
        with _held(FileLock(path, is_singleton=True), timeout, busy):
            yield

    @contextmanager
    def run_lock(self, run_id: str, timeout: float = 0.0) -> Iterator[None]:
        """Hold the lock of one run id while writing it; a second writer of the same id is refused.

        ``timeout=0`` (default) refuses at once with :class:`RunBusyError`; a positive timeout
        waits that long, ``-1`` waits forever. The operating system releases the lock when its
        holder dies, so a killed run never leaves a stale lock behind.
        """
        path = self._lock_file("runs", f"{validate_run_id(run_id)}.lock")
        busy = (
            f"run {run_id} is being written by another process (lock {path}); "
            "wait for it to finish or use another run id"
        )
        # a fresh instance: a second holder in this very process is refused too
        with _held(FileLock(path), timeout, busy):
            yield

    # -- writing ---------------------------------------------------------------
    @contextmanager
    def stage_output(self, run_id: str, name: str) -> Iterator[Path]:
        """A fresh temp folder that becomes ``.staging/<run_id>/<name>`` only if the block succeeds."""
        final = self.staging_dir(run_id) / name
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
        try:
            yield tmp
            fsync_tree(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def stage_done(self, run_id: str, name: str) -> Path | None:
        """The finished output of a stage, or None (half-written temp folders do not count)."""
        path = self.staging_dir(run_id) / name
        return path if path.is_dir() else None

    def publish(self, run_id: str, manifest: dict[str, Any]) -> Path:
        """Write the manifest into staging and move the whole run into place in one rename.

        Resumable: when a previous publish of ``run_id`` was killed after the move (nothing is
        staged any more but the run is in place with its manifest), the run in place is complete
        (its manifest is written before the move), so it is returned as it is; killed between
        setting the old copy aside and moving the new one in, the retry finishes the move.
        """
        staging = self.staging_dir(run_id)
        final = self.run_dir(run_id)
        with self.registry_lock():
            if not staging.is_dir():
                if (final / MANIFEST).exists():
                    self._sync_current()
                    return final
                raise RunError(f"run {run_id}: nothing staged under {staging}")
            for leftover in staging.glob(".*"):  # temp folders of killed stages
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
            atomic_write_json(staging / MANIFEST, {**manifest, "run_id": run_id})
            if final.exists():  # re-run of the same logical date: replace, never duplicate
                os.replace(final, self._trash("replaced", run_id))
            os.replace(staging, final)
            fsync_dir(self.root)
            fsync_dir(staging.parent)
            self._sync_current()
        self._empty_trash()
        return final

    def update_manifest(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into a manifest, under the registry lock (a status is registry state)."""
        path = self.run_dir(run_id) / MANIFEST
        with self.registry_lock():
            manifest = {**self.manifest(run_id), **fields}
            atomic_write_json(path, manifest)
            remove_stale_temps(path)
        return manifest

    def _trash(self, why: str, run_id: str) -> Path:
        """A hidden name under staging for a folder on its way out (removed outside the lock)."""
        (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        return self.root / STAGING / f".{why}-{run_id}-{time.time_ns()}"

    def _empty_trash(self) -> None:
        staging = self.root / STAGING
        if staging.is_dir():
            for path in staging.iterdir():
                if path.name.startswith(_TRASH_PREFIXES):
                    shutil.rmtree(path, ignore_errors=True)

    # -- reading ---------------------------------------------------------------
    def manifest(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / MANIFEST
        if not path.exists():
            raise RunError(f"run {run_id} not found under {self.root} (no {MANIFEST})")
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except ValueError as error:
            raise RunError(f"{path}: not valid JSON ({error})") from error
        return data

    def list_runs(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        runs = [
            self.manifest(path.name)
            for path in sorted(self.root.iterdir())
            if _is_run_id(path.name) and (path / MANIFEST).exists()
        ]
        current = self.current()
        for manifest in runs:
            manifest["current"] = manifest["run_id"] == current
        return runs

    def _history(self) -> list[dict[str, Any]]:
        path = self.root / REGISTRY
        if not path.exists():
            return []
        try:
            history = json.loads(path.read_text())["history"]
            if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
                raise TypeError("'history' is not a list of entries")
        except (ValueError, KeyError, TypeError) as error:
            raise RunError(f"{path}: not a valid registry ({type(error).__name__}: {error})") from error
        return history

    def current(self) -> str | None:
        history = self._history()
        return str(history[-1]["run_id"]) if history else None

    def current_dir(self) -> Path:
        """The promoted run's folder; a registry naming an unsafe id raises :class:`InvalidRunIdError`."""
        run_id = self.current()
        if run_id is None:
            raise RunError(f"no promoted run under {self.root}; run `recsys run` first")
        return self.run_dir(run_id)

    # -- promotion -------------------------------------------------------------
    def _sync_current(self) -> None:
        """Make CURRENT name the registry's last entry (repairs a write killed between the two).

        Runs under the registry lock, so temp files of the registry and CURRENT are a killed
        writer's leftovers and are removed too.
        """
        current = self.current()
        path = self.root / CURRENT
        if current is not None and (not path.exists() or path.read_text() != current + "\n"):
            atomic_write_text(path, current + "\n")
        for name in (REGISTRY, CURRENT):
            remove_stale_temps(self.root / name)

    def promote(self, run_id: str, reason: str = "manual") -> None:
        """Make ``run_id`` current: registry, then CURRENT, then the run's status, under the lock.

        Promoting the run that is already current adds no second entry, so a retried promote
        (a publish task retried after a crash) leaves the history as one promote would.
        """
        validate_run_id(run_id)
        with self.registry_lock():
            self._promote(run_id, reason)

    def _promote(self, run_id: str, reason: str) -> None:
        if not self.exists(run_id):
            raise RunError(f"run {run_id} not found under {self.root}")
        history = self._history()
        if not history or history[-1]["run_id"] != run_id:
            history.append({"run_id": run_id, "at": datetime.now(UTC).isoformat(), "reason": reason})
            atomic_write_json(self.root / REGISTRY, {"history": history})
        self._sync_current()
        self.update_manifest(run_id, status="promoted")

    def _rollback_target(self, history: list[dict[str, Any]], current: str | None) -> str | None:
        """The run :meth:`rollback` would make current: the last promoted one not rolled back."""
        previous = [
            str(entry["run_id"])
            for entry in history
            if entry["run_id"] != current
            and _is_run_id(str(entry["run_id"]))
            and self.exists(entry["run_id"])
            and self.manifest(entry["run_id"]).get("status") != "rolled_back"
        ]
        return previous[-1] if previous else None

    def rollback(self) -> str:
        """Make the run promoted before the current one current again.

        Runs already rolled back are skipped, so repeated rollbacks walk further back in time
        instead of bouncing between the last two runs.
        """
        with self.registry_lock():
            current = self.current()
            target = self._rollback_target(self._history(), current)
            if current is None or target is None:
                raise RunError("nothing to roll back to: fewer than two promoted runs")
            if self.exists(current):
                self.update_manifest(current, status="rolled_back")
            self._promote(target, reason=f"rollback from {current}")
        return target

    # -- retention -------------------------------------------------------------
    def prune(self, keep: int, also_keep: Callable[[], Iterable[str]] | None = None) -> list[str]:
        """Delete finished runs beyond the ``keep`` newest; returns the ids removed, oldest first.

        The promoted run and the run a rollback would return to are always kept, whatever
        ``keep`` says, and so is a run another process is writing (its run lock is held) and
        every run ``also_keep`` returns (the runs a running experiment serves). It is called under
        the registry lock, which an experiment's start takes too, so an experiment started while
        the prune waits is seen before anything is deleted. A pruned run's
        quarantine folder goes with it. Runs are moved aside under the registry lock and deleted
        after it, so a killed prune leaves whole runs or hidden trash only.
        """
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        removed: list[str] = []
        with self.registry_lock():
            history = self._history()
            current = self.current()
            protected = {
                current,
                self._rollback_target(history, current),
                *(also_keep() if also_keep else ()),
            }
            runs = self.list_runs()
            runs.sort(key=lambda run: (str(run.get("created_at", "")), str(run["run_id"])), reverse=True)
            for run in reversed(runs[keep:]):
                run_id = str(run["run_id"])
                if run_id in protected:
                    continue
                try:
                    with self.run_lock(run_id):
                        os.replace(self.run_dir(run_id), self._trash("pruned", run_id))
                        quarantine = self.quarantine_dir(run_id)
                        if quarantine.exists():
                            os.replace(quarantine, self._trash("pruned", f"{run_id}-quarantine"))
                except RunBusyError:
                    continue
                removed.append(run_id)
            if removed:
                fsync_dir(self.root)
        self._empty_trash()
        return removed


@contextmanager
def _held(lock: FileLock, timeout: float, busy: str) -> Iterator[None]:
    """Hold ``lock`` for the block; :class:`RunBusyError` with ``busy`` if it is not free in time."""
    try:
        lock.acquire(timeout=timeout)
    except Timeout as error:
        raise RunBusyError(busy) from error
    try:
        yield
    finally:
        lock.release()
