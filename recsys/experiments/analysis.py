"""An experiment's report: per-arm exposure, click-through and conversion per user, confidence
intervals, a test of each arm against the control, a sample-ratio-mismatch check and a verdict.

The user is the unit of randomization, so every metric is a ratio of per-user sums
(``Σ clicks / Σ exposures``; a per-user mean has a denominator of 1) and its variance comes from
the delta method over users (Deng et al., "Applying the Delta Method in Metric Analytics", 2018):
a user's answers and clicks are correlated, so treating answers as independent would understate it.
Arms are independent samples of users: the difference is tested with a two-sided z-test, at the
significance level split over the arms compared with the control (Bonferroni).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import stats

from feature_store.online_store import Exposure, Outcome
from recsys.experiments.definition import Experiment
from recsys.experiments.store import ExperimentStore

if TYPE_CHECKING:
    from recsys.config import FeaturesConfig

METRICS = {
    "ctr": "clicks on shown items per answer (Σ clicks / Σ answers over users)",
    "clicks_per_user": "clicks on shown items per exposed user",
    "conversion": "share of exposed users with at least one conversion event",
}
SRM_ALPHA = 0.001
"""A sample ratio this unlikely under the intended split means broken assignment or logging."""

Verdict = Literal["no_data", "invalid_srm", "insufficient_data", "significant", "no_difference"]


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class ArmResult:
    arm: str
    runs: list[str]
    """Runs that answered the arm's exposures (more than one when the arm follows the promoted run)."""
    expected_share: float
    users: int
    exposures: int
    clicks: int
    converted_users: int
    metrics: dict[str, Estimate]


@dataclass(frozen=True)
class Comparison:
    metric: str
    arm: str
    control: str
    difference: Estimate
    """Arm minus control, with the CI at the corrected level."""
    relative: float | None
    """The difference over the control's value (None when the control's is 0)."""
    z: float
    p_value: float
    outcome: Literal["better", "worse", "no_difference"]


@dataclass(frozen=True)
class SampleRatio:
    users: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool


@dataclass(frozen=True)
class ExperimentAnalysis:
    experiment: dict[str, Any]
    metric: str
    """The primary metric, the one the verdict is about."""
    alpha: float
    arms: list[ArmResult]
    comparisons: list[Comparison]
    srm: SampleRatio
    verdict: Verdict
    summary: str
    first_exposure_ts: int | None
    last_exposure_ts: int | None
    outcomes_by_id: int
    outcomes_by_window: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(x: np.ndarray, y: np.ndarray, z: float) -> Estimate:
    """``mean(x) / mean(y)`` over users with its delta-method standard error and CI."""
    n = len(x)
    if n == 0 or not y.sum():
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    mx, my = float(x.mean()), float(y.mean())
    value = mx / my
    if n < 2:
        return Estimate(value, math.nan, math.nan, math.nan)
    covariance = np.cov(np.vstack([x, y]), ddof=1)
    variance = (covariance[0, 0] - 2 * value * covariance[0, 1] + value**2 * covariance[1, 1]) / (n * my**2)
    se = math.sqrt(max(float(variance), 0.0))
    return Estimate(value, se, value - z * se, value + z * se)


def _per_user(
    experiment: Experiment, exposures: Sequence[Exposure], outcomes: Sequence[Outcome]
) -> dict[str, dict[str, np.ndarray]]:
    """Per arm, per user (in first-exposure order): exposures, clicks on shown items, conversions."""
    arm_of: dict[str, str] = {}
    counts: dict[str, list[int]] = {}
    for exposure in exposures:
        arm_of.setdefault(exposure.user_id, exposure.arm)  # a user is counted in their first arm
        counts.setdefault(exposure.user_id, [0, 0, 0])[0] += 1
    clicks, conversions = set(experiment.click_events), set(experiment.conversion_events)
    for outcome in outcomes:
        row = counts.get(outcome.user_id)
        if row is None:
            continue
        if outcome.event in clicks and outcome.shown:
            row[1] += 1
        if outcome.event in conversions:
            row[2] += 1
    arms: dict[str, dict[str, np.ndarray]] = {}
    for arm in experiment.arms:
        rows = np.asarray([counts[user] for user, name in arm_of.items() if name == arm.name], dtype=float)
        rows = rows.reshape(-1, 3)
        arms[arm.name] = {"exposures": rows[:, 0], "clicks": rows[:, 1], "conversions": rows[:, 2]}
    return arms


def _metrics(users: dict[str, np.ndarray], z: float) -> dict[str, Estimate]:
    ones = np.ones(len(users["exposures"]))
    return {
        "ctr": _ratio(users["clicks"], users["exposures"], z),
        "clicks_per_user": _ratio(users["clicks"], ones, z),
        "conversion": _ratio((users["conversions"] > 0).astype(float), ones, z),
    }


def _compare(metric: str, arm: str, control: str, a: Estimate, c: Estimate, alpha: float) -> Comparison:
    z_crit = float(stats.norm.ppf(1 - alpha / 2))
    difference = a.value - c.value
    se = math.sqrt(a.se**2 + c.se**2) if not (math.isnan(a.se) or math.isnan(c.se)) else math.nan
    if se > 0:
        z = difference / se
        p_value = float(2 * stats.norm.sf(abs(z)))
    else:  # no variance at all (e.g. nobody clicked in either arm): nothing to tell apart
        z, p_value = 0.0, 1.0 if not math.isnan(difference) else math.nan
    ci = Estimate(difference, se, difference - z_crit * se, difference + z_crit * se)
    outcome: Literal["better", "worse", "no_difference"] = "no_difference"
    if p_value < alpha:
        outcome = "better" if difference > 0 else "worse"
    relative = difference / c.value if c.value else None
    return Comparison(metric, arm, control, ci, relative, z, p_value, outcome)


def _sample_ratio(experiment: Experiment, users: dict[str, int]) -> SampleRatio:
    shares = {arm.name: experiment.share(arm.name) for arm in experiment.arms}
    total = sum(users.values())
    if total == 0:
        return SampleRatio(users, shares, math.nan, math.nan, False)
    observed = [users[arm] for arm in shares]
    expected = [total * share for share in shares.values()]
    chi2, p_value = stats.chisquare(observed, expected)
    return SampleRatio(users, shares, float(chi2), float(p_value), bool(p_value < SRM_ALPHA))


def analyze(
    experiment: Experiment,
    exposures: Sequence[Exposure],
    outcomes: Sequence[Outcome],
    metric: str = "ctr",
    alpha: float = 0.05,
    min_users: int = 100,
) -> ExperimentAnalysis:
    """The report of ``experiment`` from its logged exposures and attributed outcomes."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    per_user = _per_user(experiment, exposures, outcomes)
    arms = []
    for arm in experiment.arms:
        users = per_user[arm.name]
        arms.append(
            ArmResult(
                arm=arm.name,
                runs=sorted({e.run_id for e in exposures if e.arm == arm.name}),
                expected_share=experiment.share(arm.name),
                users=len(users["exposures"]),
                exposures=int(users["exposures"].sum()),
                clicks=int(users["clicks"].sum()),
                converted_users=int((users["conversions"] > 0).sum()),
                metrics=_metrics(users, z),
            )
        )
    control = arms[0]
    corrected = alpha / (len(arms) - 1)
    comparisons = [
        _compare(name, arm.arm, control.arm, arm.metrics[name], control.metrics[name], corrected)
        for arm in arms[1:]
        for name in METRICS
    ]
    srm = _sample_ratio(experiment, {arm.arm: arm.users for arm in arms})
    verdict, summary = _verdict(arms, [c for c in comparisons if c.metric == metric], srm, metric, min_users)
    stamps = [exposure.ts for exposure in exposures]
    return ExperimentAnalysis(
        experiment=experiment.to_json(),
        metric=metric,
        alpha=alpha,
        arms=arms,
        comparisons=comparisons,
        srm=srm,
        verdict=verdict,
        summary=summary,
        first_exposure_ts=min(stamps) if stamps else None,
        last_exposure_ts=max(stamps) if stamps else None,
        outcomes_by_id=sum(outcome.via == "id" for outcome in outcomes),
        outcomes_by_window=sum(outcome.via == "window" for outcome in outcomes),
    )


def report_experiment(
    features: FeaturesConfig, runs_dir: Path, name: str, **options: Any
) -> ExperimentAnalysis:
    """:func:`analyze` the experiment ``name`` of ``runs_dir`` from the online store's exposure log
    (``options``: metric, alpha, min_users)."""
    from feature_store.online import open_online_store

    experiment = ExperimentStore(runs_dir).get(name)
    with open_online_store(features, runs_dir) as store:
        return analyze(experiment, store.exposures(name), store.outcomes(name), **options)


def _verdict(
    arms: list[ArmResult], primary: list[Comparison], srm: SampleRatio, metric: str, min_users: int
) -> tuple[Verdict, str]:
    if not any(arm.exposures for arm in arms):
        return "no_data", "no exposures logged yet"
    if srm.mismatch:
        observed = ", ".join(f"{arm} {count}" for arm, count in srm.users.items())
        return "invalid_srm", (
            f"sample ratio mismatch (p = {srm.p_value:.2g}): users per arm {observed} do not match the "
            "intended split; assignment or logging is broken, so the differences cannot be trusted"
        )
    small = [arm.arm for arm in arms if arm.users < min_users]
    if small:
        return "insufficient_data", f"fewer than {min_users} exposed users in {', '.join(small)}"
    lines = []
    for comparison in primary:
        d = comparison.difference
        relative = f" ({comparison.relative:+.1%})" if comparison.relative is not None else ""
        what = {"better": "better than", "worse": "worse than", "no_difference": "not distinguishable from"}
        lines.append(
            f"{comparison.arm} is {what[comparison.outcome]} {comparison.control} on {metric}: "
            f"{d.value:+.4f}{relative}, CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}], p = {comparison.p_value:.2g}"
        )
    significant = any(comparison.outcome != "no_difference" for comparison in primary)
    return ("significant" if significant else "no_difference"), "; ".join(lines)
