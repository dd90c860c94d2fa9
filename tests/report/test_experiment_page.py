"""The experiment page (``recsys experiments report --html``) from a synthetic experiment: one
self-contained file whose charts all render in headless Chromium."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_report import CHROMIUM, CHROMIUM_ARGS, RENDERED_CHARTS, Scripts

from feature_store.online_store import Exposure, Outcome
from recsys.experiments import METRICS, Arm, Experiment, analyze
from recsys.report import build_experiment_report

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    experiment = Experiment("ab", (Arm("control", "run-a", 50), Arm("treatment", "run-b", 50)), "x")
    rng = np.random.default_rng(0)
    exposures, outcomes = [], []
    for user in (f"user-{i}" for i in range(600)):
        arm = experiment.assign(user)
        shown = Exposure(f"r-{user}", "ab", arm, f"run-{arm[0]}", user, 1_700_000_000, ("i1", "i2"))
        exposures.append(shown)
        if rng.random() < {"control": 0.1, "treatment": 0.2}[arm]:
            outcomes.append(Outcome(shown.recommendation_id, "ab", arm, user, "i1", "click", 1, True, "id"))
    path = tmp_path_factory.mktemp("experiment") / "ab.html"
    return build_experiment_report(analyze(experiment, exposures, outcomes), path)


def test_the_page_is_self_contained_and_names_the_verdict(page: Path) -> None:
    text = page.read_text()
    scripts = Scripts()
    scripts.feed(text)
    assert scripts.sources == [] and max(scripts.sizes) > 1_000_000
    for heading in ("Verdict", "Sample ratio", "Arms", "Each arm against the control", "treatment is better"):
        assert heading in text


def test_the_page_renders_in_headless_chromium(page: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; scripts/system-deps.sh does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            tab = browser.new_page()
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto(page.as_uri(), wait_until="load")
            tab.wait_for_function(f"({RENDERED_CHARTS}) === {len(METRICS)}", timeout=60_000)
        finally:
            browser.close()
    assert errors == []
