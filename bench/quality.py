"""The whole nightly pipeline on the dev dataset: quality against every baseline, time and memory.

    .venv/bin/python bench/quality.py [--data DIR] [--protocol per_user|global|both] [--config FILE]

For each protocol this runs every stage of ``recsys run`` (validate → features → fine-tune →
embeddings → index → retrieval → ranker → evaluation → batch recommendations) into a fresh runs
folder, so the figures are those of the product's own job. The evaluation stage scores recsys,
each of its candidate sources alone and every baseline (popularity all-time and recent, ItemKNN,
ALS, EASE, pretrained-text similarity) in the same process, on the same temporal split, with full
ranking over the catalog minus seen items. Prints the metrics table, recsys' NDCG@10 over the
best baseline's, wall time per stage and peak resident memory; writes ``quality.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rich.console import Console

from recsys.config import load_config
from recsys.console import console
from recsys.evaluation.report import metrics_table, slice_table
from recsys.pipeline import RunContext, run_pipeline

DEV_DATASET = Path("/work/shared/datasets/movielens_small_tmdb")
TEST_SHARE = {"per_user": 0.2, "global": 0.1}
"""per_user: each user's last 20% of events (users with >= 5 events); global: the last 10% of time."""


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_protocol(data: Path, config_path: Path | None, protocol: str, runs: Path) -> dict[str, Any]:
    share = TEST_SHARE[protocol]
    config = load_config(config_path, overrides={"split": {"protocol": protocol, "test_share": share}})
    ctx = RunContext.create(config, data, runs, f"quality-{protocol}")
    started = time.perf_counter()
    run_pipeline(ctx, force=True)
    wall = time.perf_counter() - started
    report = json.loads((ctx.store.run_dir(ctx.run_id) / "evaluation" / "report.json").read_text())
    ndcg = {name: slices["all"]["ndcg@10"] for name, slices in report["results"].items()}
    baselines = {name: value for name, value in ndcg.items() if name != "recsys" and ":" not in name}
    best = max(baselines, key=baselines.__getitem__)
    return {
        "protocol": protocol,
        "ndcg@10": ndcg,
        "recsys_over_best_baseline": ndcg["recsys"] / baselines[best] if baselines[best] else None,
        "best_baseline": best,
        "results": report["results"],
        "meta": report["meta"],
        "wall_s": round(wall, 1),
        "stage_s": ctx.timings,
        "peak_rss_gib": round(peak_rss_gib(), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEV_DATASET)
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: configs/default.yaml)"
    )
    parser.add_argument("--protocol", choices=["per_user", "global", "both"], default="per_user")
    parser.add_argument("--out", type=Path, default=None, help="Runs folder to keep (default: a temp dir)")
    args = parser.parse_args()
    protocols = ["per_user", "global"] if args.protocol == "both" else [args.protocol]
    with tempfile.TemporaryDirectory(prefix="recsys-quality-") as scratch:
        runs = args.out or Path(scratch)
        summaries = [run_protocol(args.data, args.config, protocol, runs) for protocol in protocols]
    wide = Console(width=200)
    for summary in summaries:
        ratio = summary["recsys_over_best_baseline"]
        wide.print(
            metrics_table(summary["results"], title=f"{summary['protocol']}: full ranking, test split")
        )
        wide.print(slice_table(summary["results"]))
        console.print(
            f"[bold]{summary['protocol']}[/]: recsys NDCG@10 {summary['ndcg@10']['recsys']:.4f}, "
            f"best baseline {summary['best_baseline']} {summary['ndcg@10'][summary['best_baseline']]:.4f} "
            f"({ratio:.2f}x); wall {summary['wall_s']:.0f} s, peak RSS {summary['peak_rss_gib']:.2f} GiB"
        )
        console.print("  stages (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["stage_s"].items()))
    target = (args.out or Path(".")) / "quality.json"
    target.write_text(json.dumps(summaries, indent=2) + "\n")
    console.print(f"wrote {target}")


if __name__ == "__main__":
    main()
