"""Arms, weights and the stable assignment of users to arms."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from recsys.experiments import BUCKETS, Arm, Experiment, ExperimentError, bucket_of, parse_arm


def experiment(*weights: float, name: str = "exp-1") -> Experiment:
    arms = tuple(Arm(f"arm{i}", f"run-{i}", weight) for i, weight in enumerate(weights))
    return Experiment(name=name, arms=arms, started_at="2026-01-01T00:00:00+00:00")


def test_parse_arm_reads_name_run_and_weight() -> None:
    assert parse_arm("control=run-a:50") == Arm("control", "run-a", 50.0)
    assert parse_arm("treatment=@current:12.5") == Arm("treatment", "@current", 12.5)
    for bad in ("control", "control=run-a", "control=run-a:x", "c=../x:50", "c=run-a:0", "c d=run-a:5"):
        with pytest.raises(ExperimentError):
            parse_arm(bad)


def test_a_users_arm_is_pinned_and_the_same_in_another_process() -> None:
    exp = experiment(50, 50)
    users = [f"user-{i}" for i in range(50)]
    here = [exp.assign(user) for user in users]
    code = (
        "from recsys.experiments import Arm, Experiment\n"
        "exp = Experiment('exp-1', (Arm('arm0', 'run-0', 50), Arm('arm1', 'run-1', 50)), 'x')\n"
        f"print(','.join(exp.assign(f'user-{{i}}') for i in range({len(users)})))"
    )
    there = subprocess.run(  # a fresh interpreter: another PYTHONHASHSEED, nothing shared
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "7"},
    ).stdout.strip()
    assert there.split(",") == here
    # pinned: changing the hash would silently move users between arms of running experiments
    assert bucket_of("exp-1", "user-0") == 2030
    assert here[:6] == ["arm0", "arm1", "arm0", "arm1", "arm0", "arm1"]


def test_weights_split_users_in_proportion_and_experiments_independently() -> None:
    users = [f"u{i}" for i in range(20_000)]
    split = Counter(experiment(10, 30, 60).assign(user) for user in users)
    for arm, share in (("arm0", 0.1), ("arm1", 0.3), ("arm2", 0.6)):
        assert abs(split[arm] / len(users) - share) < 0.015
    first = [experiment(50, 50, name="a").assign(user) for user in users[:2000]]
    second = [experiment(50, 50, name="b").assign(user) for user in users[:2000]]
    agree = sum(x == y for x, y in zip(first, second, strict=True)) / len(first)
    assert 0.45 < agree < 0.55  # another experiment reshuffles users: no carry-over between experiments


def test_shares_follow_the_buckets_and_bad_definitions_are_refused() -> None:
    exp = experiment(1, 1, 2)
    assert [exp.share(a.name) for a in exp.arms] == [0.25, 0.25, 0.5]
    assert exp.bounds[-1] == BUCKETS
    assert Experiment.from_json(exp.to_json()) == exp
    with pytest.raises(ExperimentError, match="two arms"):
        experiment(100)
    with pytest.raises(ExperimentError, match="repeat"):
        Experiment("e", (Arm("a", "r1", 1), Arm("a", "r2", 1)), "x")
    with pytest.raises(ExperimentError, match="name"):
        experiment(50, 50, name="../etc")
