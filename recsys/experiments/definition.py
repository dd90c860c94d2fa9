"""What an online experiment is: named arms, each a run and a share of users, and the stable assignment.

A user's arm depends only on ``sha256(f"{experiment}\\0{user_id}")``, never on a process's state or
Python's salted ``hash()``, so every worker, host and restart gives the same user the same arm.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from recsys.artifacts import validate_run_id

BUCKETS = 10_000
"""Users are hashed into this many buckets; arms own contiguous ranges sized by their weights."""
CURRENT_RUN = "@current"
"""An arm whose run is this follows the promoted run (a promotion or rollback moves the arm with it)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ARM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class ExperimentError(ValueError):
    """An experiment that cannot be defined, started, stopped or found; the message says why."""


@dataclass(frozen=True)
class Arm:
    name: str
    run: str
    """A run id, or :data:`CURRENT_RUN`."""
    weight: float


def parse_arm(text: str) -> Arm:
    """``control=RUN_ID:50`` (or ``control=@current:50``) as an :class:`Arm`."""
    name, sep, rest = text.partition("=")
    run, colon, weight = rest.rpartition(":")
    if not sep or not colon:
        raise ExperimentError(f"--arm {text!r}: expected NAME=RUN:WEIGHT, e.g. control=run-a:50")
    try:
        share = float(weight)
    except ValueError:
        raise ExperimentError(f"--arm {text!r}: weight {weight!r} is not a number") from None
    return make_arm(name.strip(), run.strip(), share)


def make_arm(name: str, run: str, weight: float) -> Arm:
    if not _ARM.fullmatch(name):
        raise ExperimentError(f"arm name {name!r}: use 1-32 letters, digits, '_' or '-'")
    if run != CURRENT_RUN:
        try:
            validate_run_id(run)
        except ValueError as error:
            raise ExperimentError(f"arm {name}: {error}") from None
    if not weight > 0 or weight == float("inf"):
        raise ExperimentError(f"arm {name}: weight must be a positive number, got {weight}")
    return Arm(name, run, weight)


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise ExperimentError(
            f"experiment name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def bucket_of(experiment: str, user_id: str) -> int:
    """The user's bucket in ``[0, BUCKETS)``: the same for the same pair in any process."""
    digest = hashlib.sha256(f"{experiment}\0{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Experiment:
    """A recorded experiment; at most one runs at a time (the arms split all traffic)."""

    name: str
    arms: tuple[Arm, ...]
    started_at: str
    status: Literal["running", "stopped"] = "running"
    stopped_at: str | None = None
    window_s: int = 1800
    """An event without a recommendation id counts for the user's latest exposure when it comes within
    this many seconds after it."""
    click_events: tuple[str, ...] = ("click",)
    conversion_events: tuple[str, ...] = ("purchase",)
    bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    """Each arm's exclusive upper bucket, in arm order (the last is :data:`BUCKETS`)."""

    def __post_init__(self) -> None:
        validate_name(self.name)
        if len(self.arms) < 2:
            raise ExperimentError(f"experiment {self.name}: needs at least two arms")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ExperimentError(f"experiment {self.name}: arm names repeat ({', '.join(names)})")
        if self.window_s < 0:
            raise ExperimentError(f"experiment {self.name}: the attribution window must be >= 0 s")
        total = sum(arm.weight for arm in self.arms)
        running, bounds = 0.0, []
        for arm in self.arms:
            running += arm.weight
            bounds.append(round(running / total * BUCKETS))
        if len(set(bounds)) != len(bounds) or bounds[0] == 0:
            raise ExperimentError(
                f"experiment {self.name}: an arm's weight is under 1/{BUCKETS} of the total"
            )
        object.__setattr__(self, "bounds", tuple(bounds))

    @property
    def control(self) -> Arm:
        """The arm the others are compared with: the first one."""
        return self.arms[0]

    def share(self, arm: str) -> float:
        """The share of users the arm is meant to get (its buckets over all)."""
        position = [a.name for a in self.arms].index(arm)
        low = self.bounds[position - 1] if position else 0
        return (self.bounds[position] - low) / BUCKETS

    def assign(self, user_id: str) -> str:
        """The user's arm: stable across processes, hosts and restarts."""
        bucket = bucket_of(self.name, user_id)
        for arm, bound in zip(self.arms, self.bounds, strict=True):
            if bucket < bound:
                return arm.name
        raise AssertionError("the last bound is BUCKETS")

    def kind(self, event: str) -> Literal["click", "conversion", "other"]:
        """What an event type counts as in this experiment's report."""
        if event in self.click_events:
            return "click"
        return "conversion" if event in self.conversion_events else "other"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arms": [{"name": a.name, "run": a.run, "weight": a.weight} for a in self.arms],
            "started_at": self.started_at,
            "status": self.status,
            "stopped_at": self.stopped_at,
            "window_s": self.window_s,
            "click_events": list(self.click_events),
            "conversion_events": list(self.conversion_events),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Experiment:
        try:
            return cls(
                name=data["name"],
                arms=tuple(make_arm(a["name"], a["run"], float(a["weight"])) for a in data["arms"]),
                started_at=data["started_at"],
                status=data["status"],
                stopped_at=data.get("stopped_at"),
                window_s=int(data["window_s"]),
                click_events=tuple(data["click_events"]),
                conversion_events=tuple(data["conversion_events"]),
            )
        except (KeyError, TypeError) as error:
            raise ExperimentError(f"experiment record {data.get('name')!r}: missing or bad {error}") from None
