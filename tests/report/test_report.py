"""``recsys report`` on a small real run, opened in headless Chromium: every chart renders, no console
errors, no network requests (plotly.js is inline)."""

from __future__ import annotations

import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import load_config
from recsys.data.demo import DemoSpec, write_demo
from recsys.pipeline import run_pipeline
from recsys.run_context import RunContext

TINY_CONFIG = Path(__file__).parents[1] / "dags" / "tiny_config.yaml"
SPEC = DemoSpec(users=150, items=200, events=6000, topics=6, seed=3)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [  # headless=True adds --headless
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDERED_CHARTS = """
Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(div => div.querySelector('.main-svg') && div.querySelectorAll('.trace').length > 0).length
"""

pytestmark = [pytest.mark.slow, pytest.mark.integration]


class Scripts(HTMLParser):
    """External script sources and inline script sizes (script bodies are not parsed as markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.sizes: list[int] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.sources += [value or "" for name, value in attrs if name == "src"]
            self._inside = True
            self.sizes.append(0)

    def handle_endtag(self, tag: str) -> None:
        self._inside = self._inside and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.sizes[-1] += len(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    write_demo(root / "data", SPEC)
    ctx = RunContext.create(load_config(TINY_CONFIG, environ={}), root / "data", root / "runs", "run-report")
    run_pipeline(ctx)
    out = root / "report.html"
    result = CliRunner().invoke(
        app, ["report", "--runs", str(root / "runs"), "--out", str(out), "--users", "2"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_report_is_one_self_contained_file(report: Path) -> None:
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    scripts = Scripts()
    scripts.feed(text)
    assert scripts.sources == [], "every script must be inline"
    assert max(scripts.sizes) > 1_000_000, "plotly.js itself is inline"
    for heading in (
        "Metrics against baselines",
        "Accuracy by user activity",
        "Cold start",
        "Feature importance",
        "contribution waterfalls",
        "Coverage and popularity bias",
        "Fairness: who gets exposure",
        "Exposure by popularity decile",
        "Drift since training",
    ):
        assert heading in text


def test_report_renders_in_headless_chromium_without_errors(report: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; scripts/system-deps.sh does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")

    errors: list[str] = []
    remote: list[str] = []
    screenshot = tmp_path / "report.png"
    with sync_api.sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "request",
                lambda request: None if request.url.startswith("file:") else remote.append(request.url),
            )
            page.goto(report.as_uri(), wait_until="load")
            expected = int(page.evaluate("document.body.dataset.charts"))
            page.wait_for_function(f"({RENDERED_CHARTS}) === {expected}", timeout=60_000)
            rendered = page.evaluate(RENDERED_CHARTS)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert expected >= 10 and rendered == expected
    assert errors == []
    assert remote == [], "the report must not touch the network"
    assert screenshot.stat().st_size > 100_000, "a rendered page of charts is not a tiny image"
