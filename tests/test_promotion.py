"""The bias gate: a run whose top-10 exposure is more popularity-biased than the promoted run's, on
the same split, is published as rejected with the reason recorded; the serving run stays.

Runs are staged by hand (the few stage outputs ``publish`` reads, and a real evaluation report
whose fairness section comes from :mod:`recsys.evaluation.fairness` on tiny lists), so the gate is
exercised through ``publish`` and a real run store without re-running the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.artifacts import RunStore
from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config
from recsys.evaluation.fairness import ItemGroups, fairness_report
from recsys.evaluation.report import write_report
from recsys.evaluation.run_eval import PROMOTED
from recsys.promotion import bias_gate, gate, publish
from recsys.run_context import EVALUATED, RunContext

NDCG = 0.2
N_ITEMS = 20
HEAD = np.array([[0, 1, 2, 3], [1, 0, 3, 2]])
"""Lists of the catalog's four most popular items (the head: top 20% of 20 items)."""
SPREAD = np.array([[0, 5, 9, 14], [2, 7, 12, 18]])
"""Lists mostly from the long tail."""


def _groups() -> tuple[ItemGroups, Histories]:
    items = pl.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "categories": [["c"]] * N_ITEMS})
    events = [(f"u{n}", f"i{i}") for i in range(N_ITEMS) for n in range(N_ITEMS - i)]
    train = pl.DataFrame(
        {"user_id": [u for u, _ in events], "item_id": [i for _, i in events], "ts": [0] * len(events)}
    )
    histories = Histories(["u0", "u1"], [np.array([0]), np.array([1])], [np.zeros(1), np.zeros(1)])
    return ItemGroups.build(items, ItemCatalog.from_items(items), train), histories


def _stage(store: RunStore, run_id: str, lists: dict[str, np.ndarray]) -> None:
    """The stage outputs ``build_manifest`` reads, with recsys's (and the promoted run's) lists."""
    staged = store.staging_dir(run_id)
    files = {
        "data/summary.json": {"time_range": [0, 100]},
        "split/split.json": {"test": {"rows": 10, "ts_min": 90, "ts_max": 100}},
        "ranker/ranker.json": {"features": ["f"], "info": {}},
        f"ranker/{EVALUATED}/ranker.json": {"info": {}},
        "encoder/result.json": {},
    }
    for name, content in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_text(json.dumps(content))
    groups, histories = _groups()
    results = {model: {"all": {"ndcg@10": NDCG}} for model in lists}
    write_report(
        results,
        staged / "evaluation" / "report.json",
        meta={"protocol": "per_user"},
        fairness=fairness_report(groups, lists, histories, k=4),
    )


def _publish(root: Path, run_id: str, lists: dict[str, np.ndarray], bias_tolerance: float | None):
    store = RunStore(root)
    _stage(store, run_id, lists)
    config = Config.model_validate({"pipeline": {"bias_tolerance": bias_tolerance}})
    return publish(RunContext(config, store, run_id, root / "data"))


@pytest.fixture
def served(tmp_path: Path) -> RunStore:
    """A store whose promoted run, ``old``, spreads exposure over the long tail."""
    _, promoted, reason = _publish(tmp_path, "old", {"recsys": SPREAD}, bias_tolerance=0.05)
    assert promoted and reason == "first promoted run"
    return RunStore(tmp_path)


def test_run_breaching_the_bias_gate_is_not_promoted_and_the_reason_is_recorded(served: RunStore) -> None:
    lists = {"recsys": HEAD, f"{PROMOTED}old": SPREAD}  # same NDCG@10, exposure moved to the head
    run_dir, promoted, reason = _publish(served.root, "new", lists, bias_tolerance=0.05)

    assert not promoted
    assert "popularity bias grew beyond tolerance 0.05" in reason
    assert "long-tail share 0.0000 vs promoted 0.7500" in reason
    manifest = served.manifest("new")
    assert run_dir == served.run_dir("new")
    assert manifest["status"] == "rejected" and manifest["rejected_reason"] == reason
    assert manifest["fairness"]["recsys"]["long_tail_share"] == 0.0
    assert served.current() == "old"


def test_without_a_bias_tolerance_the_same_run_is_promoted(served: RunStore) -> None:
    lists = {"recsys": HEAD, f"{PROMOTED}old": SPREAD}
    _, promoted, reason = _publish(served.root, "new", lists, bias_tolerance=None)
    assert promoted and "bias" not in reason
    assert served.current() == "new"


def test_run_as_biased_as_the_promoted_one_passes_both_gates(served: RunStore) -> None:
    lists = {"recsys": SPREAD, f"{PROMOTED}old": SPREAD}
    _, promoted, reason = _publish(served.root, "new", lists, bias_tolerance=0.0)
    assert promoted and "popularity bias within tolerance 0" in reason


def test_bias_gate_compares_only_on_the_same_split(served: RunStore) -> None:
    """Without the promoted run re-scored on this split, the bias gate cannot judge and says so."""
    manifest = {
        "metrics": {"recsys": {"ndcg@10": NDCG}},
        "fairness": {"recsys": {"gini": 1.0, "long_tail_share": 0.0, "calibration_kl": 0.0}},
        "data": {"split": {"test": {"rows": 10, "ts_min": 90, "ts_max": 100}}},
    }
    promote, reason = gate(served, "new", manifest, tolerance=0.02, bias_tolerance=0.0)
    assert promote and "bias gate skipped" in reason
    assert bias_gate(manifest, "old", 0.0) == (True, reason.split("; ")[-1])


def test_gini_rise_alone_breaches_the_gate() -> None:
    manifest = {
        "fairness": {
            "recsys": {"gini": 0.60, "long_tail_share": 0.5, "calibration_kl": 0.0},
            f"{PROMOTED}old": {"gini": 0.50, "long_tail_share": 0.5, "calibration_kl": 0.0},
        }
    }
    passed, reason = bias_gate(manifest, "old", 0.05)
    assert not passed and "Gini of exposure 0.6000 vs promoted 0.5000 (+0.1000)" in reason
    assert bias_gate(manifest, "old", 0.1)[0]
