"""Experiments recorded beside the promotion registry: ``<runs>/experiments.json``.

Written like the registry (a temporary file, fsync, rename) under the registry's lock, so a start
racing a promotion, a prune or another start never loses an entry, and a crash leaves the old file
or the new one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from recsys.artifacts import RunError, RunStore, atomic_write_json, remove_stale_temps
from recsys.config import config_of_run
from recsys.experiments.definition import CURRENT_RUN, Arm, Experiment, ExperimentError, validate_name

EXPERIMENTS = "experiments.json"


class ExperimentStore:
    """The experiments of one runs folder: start, stop, list, and the one running now."""

    def __init__(self, root: str | Path) -> None:
        self.runs = RunStore(root)
        self.path = Path(root) / EXPERIMENTS

    def experiments(self) -> list[Experiment]:
        if not self.path.exists():
            return []
        try:
            records = json.loads(self.path.read_text())["experiments"]
        except (ValueError, KeyError, TypeError) as error:
            raise ExperimentError(f"{self.path}: not a valid experiments file ({error})") from None
        return [Experiment.from_json(record) for record in records]

    def get(self, name: str) -> Experiment:
        for experiment in self.experiments():
            if experiment.name == name:
                return experiment
        raise ExperimentError(f"no experiment named {name!r} under {self.runs.root}")

    def active(self) -> Experiment | None:
        """The running experiment, if any: what serving splits its traffic by."""
        running = [experiment for experiment in self.experiments() if experiment.status == "running"]
        return running[0] if running else None

    def running_runs(self) -> set[str]:
        """The run ids the running experiment's arms name (not :data:`CURRENT_RUN`, which retention
        keeps as the promoted run anyway): what ``RunStore.prune(also_keep=...)`` must not delete."""
        active = self.active()
        if active is None:
            return set()
        return {arm.run for arm in active.arms if arm.run != CURRENT_RUN}

    def resolve(self, arm: Arm) -> str:
        """The run id an arm serves now (:data:`CURRENT_RUN`: the promoted run)."""
        if arm.run != CURRENT_RUN:
            return arm.run
        current = self.runs.current()
        if current is None:
            raise ExperimentError(f"arm {arm.name} follows the promoted run, and none is promoted")
        return current

    def start(
        self,
        name: str,
        arms: Sequence[Arm],
        window_s: int = 1800,
        click_events: Sequence[str] = ("click",),
        conversion_events: Sequence[str] = ("purchase",),
    ) -> Experiment:
        """Record a running experiment; refused while another runs, for a used name, or a missing run."""
        validate_name(name)
        with self.runs.registry_lock():
            experiments = self.experiments()
            if any(experiment.name == name for experiment in experiments):
                raise ExperimentError(f"experiment {name!r} exists already (names are never reused)")
            running = [experiment.name for experiment in experiments if experiment.status == "running"]
            if running:
                raise ExperimentError(f"experiment {running[0]!r} is running; stop it first")
            experiment = Experiment(
                name=name,
                arms=tuple(arms),
                started_at=datetime.now(UTC).isoformat(),
                window_s=window_s,
                click_events=tuple(click_events),
                conversion_events=tuple(conversion_events),
            )
            promoted = self.runs.current()
            reference = self._definitions(promoted) if promoted is not None else None
            for arm in experiment.arms:
                try:
                    version = self._definitions(self.resolve(arm))
                except RunError as error:
                    raise ExperimentError(f"arm {arm.name}: {error}") from None
                reference = reference or version
                if version != reference:
                    raise ExperimentError(
                        f"arm {arm.name}: run {self.resolve(arm)} has feature definitions {version}, the "
                        f"promoted run {reference}; every arm reads the online store the promoted run "
                        "pushed, so arms must share its feature definitions"
                    )
            self._write([*experiments, experiment])
        return experiment

    def stop(self, name: str) -> Experiment:
        """Mark the experiment stopped: serving answers every user from the promoted run again."""
        with self.runs.registry_lock():
            experiments = self.experiments()
            found = [experiment for experiment in experiments if experiment.name == name]
            if not found:
                raise ExperimentError(f"no experiment named {name!r} under {self.runs.root}")
            if found[0].status == "stopped":
                return found[0]
            stopped = Experiment.from_json(
                {**found[0].to_json(), "status": "stopped", "stopped_at": datetime.now(UTC).isoformat()}
            )
            self._write([stopped if experiment.name == name else experiment for experiment in experiments])
        return stopped

    def _definitions(self, run_id: str) -> str:
        """The version of the feature definitions the run's recorded config declares."""
        from feature_store.repository import default_feature_set

        manifest = self.runs.manifest(run_id)
        return default_feature_set(config_of_run(manifest.get("config", {})).features).version

    def _write(self, experiments: list[Experiment]) -> None:
        atomic_write_json(self.path, {"experiments": [experiment.to_json() for experiment in experiments]})
        remove_stale_temps(self.path)
