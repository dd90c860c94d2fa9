"""Publishing a finished run: its manifest, the quality gate, and promotion.

Separate from running stages (:mod:`recsys.pipeline`) and from assembling a recommender
(:mod:`recsys.assemble`): it only reads what the stages wrote.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from recsys import __version__
from recsys.artifacts import RunStore, atomic_write_json
from recsys.device import machine_facts
from recsys.evaluation.fairness import fairness_summary
from recsys.evaluation.run_eval import PROMOTED
from recsys.run_context import EVALUATED, RunContext


def _versions() -> dict[str, str]:
    names = [
        "recsys",
        "torch",
        "sentence-transformers",
        "transformers",
        "faiss-cpu",
        "faiss-gpu",
        "lightgbm",
        "onnxruntime",
        "polars",
    ]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _code_version() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def _stage_json(ctx: RunContext, stage: str, *parts: str) -> Any:
    """A JSON file a stage wrote, or None (a stage written by an older recsys, or not run)."""
    try:
        path = ctx.path(stage).joinpath(*parts)
    except FileNotFoundError:
        return None
    return json.loads(path.read_text()) if path.exists() else None


def _window(split: dict[str, Any], *parts: str) -> dict[str, Any]:
    """Time range and rows of the union of split parts (as the split stage summarized them)."""
    chosen = [split[part] for part in parts if split.get(part, {}).get("rows")]
    if not chosen:
        return {"parts": list(parts), "rows": 0}
    return {
        "parts": list(parts),
        "rows": sum(part["rows"] for part in chosen),
        "ts_min": min(part["ts_min"] for part in chosen),
        "ts_max": max(part["ts_max"] for part in chosen),
    }


def artifacts_section(ctx: RunContext, split: dict[str, Any], data_range: list[int]) -> dict[str, Any]:
    """Which artifacts the evaluation scored and which the run ships, and the windows each saw."""
    encoder = json.loads((ctx.path("encoder") / "result.json").read_text())
    everything = {"parts": ["all"], "ts_min": data_range[0], "ts_max": data_range[1]}
    return {
        "evaluated": {
            "encoder": f"encoder/{EVALUATED}/model",
            "embeddings": f"embeddings/{EVALUATED}",
            "index": f"index/{EVALUATED}",
            "ranker": f"ranker/{EVALUATED}",
            "sources": "retrieval/eval",
            "windows": {
                "encoder": _window(split, "fit"),
                "ranker_history": _window(split, "fit"),
                "ranker_labels": _window(split, "label_train", "label_valid"),
                "sources": _window(split, "train"),
                "test": _window(split, "test"),
            },
        },
        "shipped": {
            "encoder": "encoder/model",
            "embeddings": "embeddings",
            "index": "index",
            "ranker": "ranker",
            "sources": "retrieval/serving",
            "recommendations": "recommendations/recommendations.parquet",
            "windows": {
                "encoder": everything
                if encoder.get("shipped", {}).get("refreshed")
                else _window(split, "fit"),
                "ranker_history": _window(split, "ship_fit"),
                "ranker_labels": _window(split, "ship_label_train", "ship_label_valid"),
                "sources": everything,
            },
            "ranker_features": "semantic features from the evaluated encoder while training "
            "(it has not seen the label window), from the shipped encoder when serving",
        },
        "encoder": encoder,
        "embeddings_backend": {
            "evaluated": _stage_json(ctx, "embeddings", EVALUATED, "encoder.json"),
            "shipped": _stage_json(ctx, "embeddings", "encoder.json"),
        },
        # The safety wall-clock limit stopped fine-tuning: this run depends on the machine's speed.
        "encoder_stopped_by_time_limit": any(
            bool(part.get("stopped_by_budget")) for part in encoder.values() if isinstance(part, dict)
        ),
    }


def build_manifest(ctx: RunContext) -> dict[str, Any]:
    summary = json.loads((ctx.path("data") / "summary.json").read_text())
    split = json.loads((ctx.path("split") / "split.json").read_text())
    ranker_meta = json.loads((ctx.path("ranker") / "ranker.json").read_text())
    evaluated_ranker = json.loads((ctx.path("ranker") / EVALUATED / "ranker.json").read_text())
    report = json.loads((ctx.path("evaluation") / "report.json").read_text())
    metrics = {model: slices["all"] for model, slices in report["results"].items()}
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recsys_version": __version__,
        "code_version": _code_version(),
        "versions": _versions(),
        "machine": machine_facts(),
        "config": ctx.config.model_dump(mode="json"),
        "data": {**summary, "split": split},
        "feature_set": {"name": "ranker-default", "features": ranker_meta["features"]},
        "ranker": ranker_meta["info"],
        "evaluated_ranker": evaluated_ranker["info"],
        "artifacts": artifacts_section(ctx, split, summary["time_range"]),
        "metrics": metrics,
        "fairness": fairness_summary(report.get("fairness", {})),
        "evaluation": report["meta"],
        "timings_s": ctx.timings,
        "parent_run": ctx.store.current(),
        "status": "candidate",
    }


def bias_gate(manifest: dict[str, Any], current: str, tolerance: float) -> tuple[bool, str]:
    """Refuse when recsys's top-10 exposure is more popularity-biased than the promoted run's.

    Biased means the Gini of exposure rose, or the share of long-tail slots fell, by more than
    ``tolerance`` (absolute; both lie in [0, 1]). Only the promoted run re-scored on this run's split
    is compared: exposure figures of two different windows differ with the data, not the model.
    """
    fairness = manifest.get("fairness", {})
    new, old = fairness.get("recsys"), fairness.get(f"{PROMOTED}{current}")
    if new is None or old is None:
        return True, "bias gate skipped: the promoted run was not re-scored on this run's split"
    gini_rise = new["gini"] - old["gini"]
    tail_drop = old["long_tail_share"] - new["long_tail_share"]
    passed = gini_rise <= tolerance and tail_drop <= tolerance
    verdict = (
        f"{'popularity bias within' if passed else 'popularity bias grew beyond'} tolerance {tolerance:g}: "
        f"Gini of exposure {new['gini']:.4f} vs promoted {old['gini']:.4f} ({gini_rise:+.4f}), "
        f"long-tail share {new['long_tail_share']:.4f} vs promoted {old['long_tail_share']:.4f} "
        f"({new['long_tail_share'] - old['long_tail_share']:+.4f})"
    )
    return passed, verdict


def gate(
    store: RunStore,
    run_id: str,
    manifest: dict[str, Any],
    tolerance: float,
    bias_tolerance: float | None = None,
) -> tuple[bool, str]:
    """Promote when NDCG@10 >= the promoted run's x (1 - tolerance) on the same evaluation window
    and, with ``bias_tolerance`` set, popularity bias has not grown beyond it (:func:`bias_gate`).

    The evaluation stage re-scores the promoted run on this run's split (``promoted:<id>``), so
    a night with new data still compares both models on one window; without that row (a re-run
    on the same data, or a run published before), the two runs' own figures are compared and the
    reason says whether their windows are the same. Judged on the staged manifest before anything
    moves, so a regressing re-run of the promoted date cannot replace the run that is serving.
    """
    current = store.current()
    if current is None:
        return True, "first promoted run"
    old = store.manifest(current)
    new_ndcg = float(manifest["metrics"]["recsys"]["ndcg@10"])
    rescored = manifest["metrics"].get(f"{PROMOTED}{current}")
    if rescored is not None:
        old_ndcg = float(rescored["ndcg@10"])
        window = "same evaluation window: the promoted run re-scored on this run's split"
    else:
        old_ndcg = float(old["metrics"]["recsys"]["ndcg@10"])
        same_window = manifest["data"]["split"]["test"] == old["data"]["split"]["test"]
        window = "same evaluation window" if same_window else "evaluation windows differ"
    floor = old_ndcg * (1 - tolerance)
    rerun = "re-run of the promoted run: " if current == run_id else ""
    verdict = (
        f"{rerun}NDCG@10 {new_ndcg:.4f} vs promoted {current} {old_ndcg:.4f} (floor {floor:.4f}, {window})"
    )
    if bias_tolerance is None:
        return new_ndcg >= floor, verdict
    fair, bias = bias_gate(manifest, current, bias_tolerance)
    return new_ndcg >= floor and fair, f"{verdict}; {bias}"


def publish(ctx: RunContext) -> tuple[Path, bool, str]:
    """Gate the staged run, move it into place, and promote it if it passed.

    A rejected new run is published with status ``rejected`` (kept for inspection); a rejected
    re-run of the promoted run stays staged, so the serving run is never replaced by a worse one.
    """
    store = ctx.store
    manifest = build_manifest(ctx)
    # One registry lock from the gate's verdict to the promotion: no other run's promote lands between.
    with store.registry_lock():
        pipeline = ctx.config.pipeline
        promote, reason = gate(store, ctx.run_id, manifest, pipeline.gate_tolerance, pipeline.bias_tolerance)
        if not promote and store.current() == ctx.run_id:
            staged = store.staging_dir(ctx.run_id)
            atomic_write_json(
                staged / "manifest.json", {**manifest, "status": "rejected", "rejected_reason": reason}
            )
            return staged, False, reason
        run_dir = store.publish(ctx.run_id, manifest)
        if promote:
            store.promote(ctx.run_id, reason)
        else:
            store.update_manifest(ctx.run_id, status="rejected", rejected_reason=reason)
    return run_dir, promote, reason
