"""An online experiment end to end against real uvicorn processes on the tiny run: two runs as arms,
many users, clicks generated with a known higher rate for one arm, and the report that finds it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from srv_helpers import TOKEN, LiveServer, TinyRun, clone_run
from typer.testing import CliRunner

from recsys.artifacts import RunStore
from recsys.cli import app
from recsys.cli.experiments import METRICS as CLI_METRICS
from recsys.experiments import METRICS, ExperimentStore, parse_arm

pytestmark = [pytest.mark.slow, pytest.mark.integration]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLICK_RATE = {"control": 0.15, "treatment": 0.45}
"""Chance that an answer is clicked, per arm: the effect the report must find (+0.30 CTR)."""
USERS = 300


def cli(run: TinyRun, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(run.config_path), "experiments", *args])
    assert result.exit_code == 0, result.output
    return result.output


def recommend(client: httpx.Client, user: str) -> dict[str, object]:
    answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_an_experiment_end_to_end_on_two_servers(
    live_server: Callable[..., LiveServer], runs_copy: TinyRun, tmp_path: Path
) -> None:
    clone_run(runs_copy.runs_dir, runs_copy.run_id, "run-treatment")
    runs = ["--runs", str(runs_copy.runs_dir)]
    arms = ["--arm", f"control={runs_copy.run_id}:50", "--arm", "treatment=run-treatment:50"]
    cli(runs_copy, "start", "ab", *arms, "--window-s", "600", *runs)
    definition = ExperimentStore(runs_copy.runs_dir).get("ab")
    first, second = live_server(), live_server()  # two processes: nothing shared but the store

    users = [f"visitor-{i}" for i in range(USERS)] + ["u1", "u2", "u3"]  # new users and known ones
    answers: dict[str, dict[str, object]] = {}
    a, b = httpx.Client(base_url=first.url, timeout=30), httpx.Client(base_url=second.url, timeout=30)
    with a, b:
        for position, user in enumerate(users):
            answers[user] = recommend(a if position % 2 else b, user)
        for user in users[:40] + users[-3:]:  # the other process, later: the same arm
            again = recommend(b if users.index(user) % 2 else a, user)
            assert again["arm"] == answers[user]["arm"]
            assert again["recommendation_id"] != answers[user]["recommendation_id"]
    for user, body in answers.items():
        assert body["arm"] == definition.assign(user)
        assert body["run_id"] == {"control": runs_copy.run_id, "treatment": "run-treatment"}[str(body["arm"])]
    split = {arm: sum(body["arm"] == arm for body in answers.values()) for arm in CLICK_RATE}
    assert min(split.values()) > USERS * 0.4

    # clicks on the first item shown, with the answer's recommendation id, at each arm's rate
    rng = np.random.default_rng(7)
    now = int(time.time())
    clicks = []
    for user, body in answers.items():
        items = body["items"]
        assert isinstance(items, list) and items
        if rng.random() < CLICK_RATE[str(body["arm"])]:
            clicks.append(
                {
                    "user_id": user,
                    "item_id": items[0]["item_id"],
                    "ts": now,
                    "event": "click",
                    "event_id": f"click-{user}",
                    "recommendation_id": body["recommendation_id"],
                }
            )
    with httpx.Client(base_url=first.url, timeout=30, headers=AUTH) as a:
        posted = a.post("/v1/events", json={"events": clicks})
        assert posted.status_code == 200, posted.text
        assert posted.json()["attributed"] == len(clicks)
        retried = a.post("/v1/events", json={"events": clicks[:5]})  # a retry counts once
        assert retried.json()["duplicates"] == 5 and retried.json()["attributed"] == 0
        someone, other = "visitor-0", "visitor-1"
        bought = answers[someone]["items"][1]["item_id"]  # type: ignore[index]
        late = {"user_id": someone, "item_id": bought, "ts": now + 60, "event": "purchase"}  # by the window
        stolen = {**late, "user_id": other, "recommendation_id": answers[someone]["recommendation_id"]}
        outside = {**late, "user_id": "never-answered", "ts": now + 5}
        mixed = a.post("/v1/events", json={"events": [late, stolen, outside]})
        assert mixed.status_code == 200, mixed.text
        assert mixed.json()["attributed"] == 1  # another user's id and an unexposed user count for nothing
        metrics = a.get("/metrics").text
    arm = definition.assign(someone)
    assert f'recsys_experiment_outcomes_total{{arm="{arm}",experiment="ab",kind="conversion"}} 1.0' in metrics
    assert 'recsys_experiment_exposures_total{arm="treatment",experiment="ab"}' in metrics

    html, as_json = tmp_path / "ab.html", tmp_path / "ab.json"
    output = cli(runs_copy, "report", "ab", "--html", str(html), "--json", str(as_json), *runs)
    assert "treatment is better than control on ctr" in output
    report = json.loads(as_json.read_text())
    assert report["verdict"] == "significant" and not report["srm"]["mismatch"]
    found = {c["metric"]: c for c in report["comparisons"]}
    ctr, per_user = found["ctr"], found["clicks_per_user"]
    assert ctr["outcome"] == "better" and ctr["p_value"] < 1e-4
    # each user clicked their first answer at their arm's rate: the true effect per user is +0.30
    assert per_user["difference"]["ci_low"] < 0.30 < per_user["difference"]["ci_high"]
    assert sum(arm["users"] for arm in report["arms"]) == len(users)
    assert sum(arm["exposures"] for arm in report["arms"]) == len(users) + 43
    assert report["outcomes_by_window"] == 1
    page = html.read_text()
    assert "Sample ratio" in page and "treatment" in page and page.count('class="chart"') == len(METRICS)
    assert set(CLI_METRICS) == set(METRICS)

    # stopping is picked up by both servers without a restart: everyone gets the promoted run again
    cli(runs_copy, "stop", "ab", *runs)
    for server in (first, second):
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while recommend(client, "visitor-3")["arm"] is not None:
                assert time.monotonic() < deadline, "the server did not drop the stopped experiment"
                time.sleep(0.2)
            body = recommend(client, "visitor-3")
            assert body["recommendation_id"] is None and body["run_id"] == runs_copy.run_id
    assert "stopped" in cli(runs_copy, "list", *runs)


def test_reload_keeps_the_experiment_and_an_arm_follows_the_promoted_run(
    live_server: Callable[..., LiveServer], runs_copy: TinyRun
) -> None:
    clone_run(runs_copy.runs_dir, runs_copy.run_id, "run-next")
    ExperimentStore(runs_copy.runs_dir).start(
        "follow", [parse_arm("control=@current:50"), parse_arm(f"treatment={runs_copy.run_id}:50")]
    )
    server = live_server()
    definition = ExperimentStore(runs_copy.runs_dir).get("follow")
    user = next(f"v{i}" for i in range(100) if definition.assign(f"v{i}") == "control")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert recommend(client, user)["run_id"] == runs_copy.run_id
        RunStore(runs_copy.runs_dir).promote("run-next")
        reloaded = client.post("/admin/reload", headers=AUTH)
        assert reloaded.status_code == 200 and reloaded.json()["run_id"] == "run-next"
        body = recommend(client, user)
        assert body["arm"] == "control" and body["run_id"] == "run-next"  # the arm moved with promotion
        RunStore(runs_copy.runs_dir).rollback()
        assert client.post("/admin/reload", headers=AUTH).json()["run_id"] == runs_copy.run_id
        assert recommend(client, user)["run_id"] == runs_copy.run_id
    shown = cli(runs_copy, "show", "follow", "--runs", str(runs_copy.runs_dir))
    assert '"@current"' in shown
