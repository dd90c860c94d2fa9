"""The report's statistics on synthetic logs whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store.online_store import Exposure, Outcome
from recsys.experiments import Arm, Experiment, analyze

EXP = Experiment("exp", (Arm("control", "run-a", 50), Arm("treatment", "run-b", 50)), "x")


def simulate(
    users: int, click_rate: dict[str, float], seed: int, buy_rate: dict[str, float] | None = None
) -> tuple[list[Exposure], list[Outcome]]:
    """Each user gets 1-5 answers of their arm; each answer is clicked with the arm's rate."""
    rng = np.random.default_rng(seed)
    exposures, outcomes = [], []
    for u in range(users):
        user = f"user-{u}"
        arm = EXP.assign(user)
        for n in range(int(rng.integers(1, 6))):
            shown = Exposure(f"{user}-{n}", "exp", arm, f"run-{arm}", user, 1000 + n, ("i1", "i2"))
            exposures.append(shown)
            rid = shown.recommendation_id
            if rng.random() < click_rate[arm]:
                outcomes.append(Outcome(rid, "exp", arm, user, "i1", "click", 1001, True, "id"))
            if buy_rate and rng.random() < buy_rate[arm]:
                outcomes.append(Outcome(rid, "exp", arm, user, "i7", "purchase", 1002, False, "id"))
    return exposures, outcomes


def test_a_known_higher_click_rate_is_found_with_its_confidence_interval() -> None:
    exposures, outcomes = simulate(4000, {"control": 0.10, "treatment": 0.13}, seed=1)
    report = analyze(EXP, exposures, outcomes)
    ctr = next(c for c in report.comparisons if c.metric == "ctr")
    assert report.verdict == "significant" and ctr.outcome == "better" and ctr.arm == "treatment"
    assert ctr.p_value < 1e-4
    assert ctr.difference.ci_low < 0.03 < ctr.difference.ci_high  # the true difference is inside
    control, treatment = report.arms
    assert abs(control.metrics["ctr"].value - 0.10) < 0.01
    assert abs(treatment.metrics["ctr"].value - 0.13) < 0.01
    assert control.metrics["ctr"].ci_low < 0.10 < control.metrics["ctr"].ci_high
    assert not report.srm.mismatch and "treatment is better than control on ctr" in report.summary
    assert control.users + treatment.users == 4000
    assert control.exposures + treatment.exposures == len(exposures)


def test_equal_arms_are_not_called_different_at_the_expected_rate() -> None:
    """A/A: over 40 simulated experiments at alpha 0.05, about 2 false positives (binomial: <= 6)."""
    positives = 0
    for seed in range(40):
        exposures, outcomes = simulate(400, {"control": 0.2, "treatment": 0.2}, seed=100 + seed)
        report = analyze(EXP, exposures, outcomes, min_users=50)
        positives += report.verdict == "significant"
    assert positives <= 6


def test_conversion_is_per_user_and_counts_events_off_the_list() -> None:
    exposures, outcomes = simulate(
        3000, {"control": 0.1, "treatment": 0.1}, seed=3, buy_rate={"control": 0.02, "treatment": 0.08}
    )
    report = analyze(EXP, exposures, outcomes, metric="conversion")
    conversion = next(c for c in report.comparisons if c.metric == "conversion")
    assert conversion.outcome == "better" and report.verdict == "significant"
    control, treatment = report.arms
    assert 0 < control.converted_users < treatment.converted_users <= treatment.users


def test_sample_ratio_mismatch_is_flagged_before_any_verdict() -> None:
    exposures, outcomes = simulate(4000, {"control": 0.1, "treatment": 0.2}, seed=4)
    lost = {e.user_id for e in exposures if e.arm == "treatment"}
    dropped = set(sorted(lost)[: len(lost) // 5])  # a fifth of treatment's users never logged
    kept = [e for e in exposures if e.user_id not in dropped]
    report = analyze(EXP, kept, outcomes)
    assert report.srm.mismatch and report.verdict == "invalid_srm" and report.srm.p_value < 0.001
    balanced = analyze(EXP, exposures, outcomes)
    assert not balanced.srm.mismatch and balanced.srm.p_value > 0.001


def test_no_data_and_too_few_users_get_no_verdict() -> None:
    assert analyze(EXP, [], []).verdict == "no_data"
    exposures, outcomes = simulate(60, {"control": 0.1, "treatment": 0.5}, seed=5)
    assert analyze(EXP, exposures, outcomes).verdict == "insufficient_data"
    with pytest.raises(ValueError, match="metric"):
        analyze(EXP, exposures, outcomes, metric="revenue")
