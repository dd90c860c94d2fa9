"""What `recsys run` ships, scored through the CLI alone, beside strong baselines on the same time cut.

    .venv/bin/python bench/quality.py [--data DIR ...] [--regimes R,R ...] [--protocol per_user|global|both]
                                      [--variants fine_tuned,pretrained,no_text] [--config FILE] [--out DIR]

For each dataset (every folder of ``../shared/datasets`` by default, plus generated demo catalogs
for ``--regimes``) and protocol, the events are cut in time:

* ``per_user``: each user's last 20% of events is the future (users with >= 5 events);
* ``global``: the last 10% of the time range is the future (what a nightly job really faces).

The past (all items, the events before the cut) becomes a dataset folder; ``recsys run --data PAST``
runs the nightly pipeline on it in a subprocess, and ``recsys recommend --users USERS --out
recs.parquet --k 100`` writes the shipped lists for every user with future events. Those lists are
scored against the future with full ranking (seen items excluded), beside baselines fitted on the
same past in this process: popularity all-time and recent, ItemKNN, ALS, EASE, co-visitation, the
markov walk, category taste × popularity within the category and pretrained-text similarity.
Slices: cold items (<= 3 past events) and sparse users (<= 5 past events). Variants (ablation of
text): ``fine_tuned`` (the default recipe), ``pretrained`` (the base encoder, not fine-tuned),
``no_text`` (no semantic source and no text features); ``category`` always adds the category
source (by default a trial source: it joins where it earns it), ``no_trial`` never does;
``more_sources`` adds it, ALS and ItemKNN candidates (and their features).

The ratio of each recsys variant to the best baseline comes with a 95% bootstrap interval (test users
resampled in pairs), so a cut with few test users says how far its ratio can be trusted.

Writes ``quality.json`` and ``quality.md`` (the README's table) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import polars as pl
from timed_cli import RECSYS, timed_cli

from recsys.catalog import ItemCatalog
from recsys.config import load_config
from recsys.console import console
from recsys.data import load_dataset
from recsys.device import machine_facts
from recsys.evaluation.metrics import per_user_metrics, ratio_interval
from recsys.evaluation.protocol import (
    BASELINES,
    DEFAULT_TEST_SHARE,
    EvalSplit,
    evaluate_topk,
    make_split,
    run_baselines,
)
from recsys.evaluation.run_eval import topk_matrix
from recsys.models.category import category_codes
from recsys.ranking.ranker import META_FILE, MODEL_FILE
from recsys.run_context import EVALUATED

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
K = 100
KS = [10, 100]
VARIANTS: dict[str, dict[str, str]] = {
    "fine_tuned": {},
    "pretrained": {"RECSYS_ENCODER__FINE_TUNE": "false"},
    "category": {
        "RECSYS_RETRIEVAL__SOURCES": "[semantic, cold_text, covisit, markov, popular, ease, category]"
    },
    # the category source's taste weighed towards the user's latest events (as the category_recent baseline)
    "recent_taste": {"RECSYS_RETRIEVAL__CATEGORY_TASTE_HALF_LIFE_EVENTS": "3"},
    # the recipe before trial sources: category never joins the candidates
    "no_trial": {"RECSYS_RETRIEVAL__TRIAL_SOURCES": "[]"},
    "more_sources": {
        "RECSYS_RETRIEVAL__SOURCES": (
            "[semantic, cold_text, covisit, markov, popular, ease, category, als, itemknn]"
        )
    },
    # the ranker's label window as wide as the per-user test horizon (20% of a user's events)
    "wide_labels": {"RECSYS_RANKING__LABEL_SHARE": "0.25"},
    "no_text": {
        "RECSYS_ENCODER__FINE_TUNE": "false",
        "RECSYS_RETRIEVAL__SOURCES": "[covisit, markov, popular, ease]",
        "RECSYS_RANKING__TEXT_FEATURES": "false",
    },
}
COLUMNS = [
    ("all", "ndcg@10"),
    ("all", "recall@100"),
    ("cold_items", "recall@100"),
    ("sparse_users", "ndcg@10"),
]


def shipped_lists(
    past: Path, split: EvalSplit, variant: str, protocol: str, config: Path | None, scratch: Path
) -> tuple[np.ndarray, dict[str, Any]]:
    """The top-K lists `recsys run` + `recsys recommend` ship for the split's test users."""
    runs = scratch / f"runs-{variant}"
    env = {
        **os.environ,
        **VARIANTS[variant],
        "RECSYS_SPLIT__PROTOCOL": protocol,
        "RECSYS_SPLIT__TEST_SHARE": str(DEFAULT_TEST_SHARE[protocol]),
    }
    common = ["--config", str(config)] if config else []
    log = scratch / f"{variant}.log"
    run = timed_cli([*common, "run", "--data", str(past), "--runs", str(runs), "--run-id", "bench"], log, env)
    users = scratch / "users.parquet"
    pl.DataFrame({"user_id": split.histories.user_ids}).write_parquet(users)
    recs_path = scratch / f"recs-{variant}.parquet"
    recommend = timed_cli(
        [
            *common,
            "recommend",
            "--users",
            str(users),
            "--out",
            str(recs_path),
            "--k",
            str(K),
            "--runs",
            str(runs),
        ],
        log,
        env,
    )
    recs = split.catalog.with_index(pl.read_parquet(recs_path))
    manifest = json.loads((runs / "bench" / "manifest.json").read_text())
    timings = {
        "run": run,
        "recommend": recommend,
        "stages_s": manifest["timings_s"],
        "rankers": {name: ranker_shape(runs / "bench" / "ranker" / sub) for name, sub in RANKERS.items()},
    }
    return topk_matrix(recs, split.histories.user_ids, K), timings


RANKERS = {"shipped": "", "evaluated": EVALUATED}


def ranker_shape(folder: Path) -> dict[str, Any]:
    """Members, trees, label rows and candidate sources of a run's ranker, read from its saved
    metadata: the cost behind the run's time, which cuts a change of the ensemble's size touches, and
    where a trial source joined (with every source's NDCG@10 on the label window)."""
    info = json.loads((folder / META_FILE).read_text())["info"]
    trees = (folder / MODEL_FILE).read_text().count("\nTree=")
    return {
        "members": len(info.get("members", [info])),
        "trees": trees,
        "train_rows": info["train_rows"],
        "sources": info.get("sources"),
        "source_trial": info.get("source_trial"),
    }


def pretrained_vectors(items: pl.DataFrame, config: Path | None) -> np.ndarray:
    from recsys.embeddings import encode_texts, item_texts
    from recsys.encoder.model import load_encoder

    cfg = load_config(config)
    texts = item_texts(items, cfg.embeddings.template)
    return encode_texts(load_encoder(cfg.encoder.base_model), texts, cfg.embeddings)


def bench_dataset(
    data: Path, protocol: str, variants: list[str], config: Path | None, scratch: Path
) -> dict[str, Any]:
    dataset = load_dataset(data)
    catalog = ItemCatalog.from_items(dataset.items)
    split = make_split(dataset.interactions, catalog, protocol, DEFAULT_TEST_SHARE[protocol])
    past = scratch / "past"
    past.mkdir(parents=True, exist_ok=True)
    dataset.items.write_parquet(past / "items.parquet")
    split.train.write_parquet(past / "interactions.parquet")
    results: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    lists: dict[str, np.ndarray] = {}
    for variant in variants:
        console.print(f"[bold]{data.name} / {protocol} / {variant}[/]: recsys run + recommend")
        name = f"recsys ({variant})"
        lists[name], timings[variant] = shipped_lists(past, split, variant, protocol, config, scratch)
        results[name] = evaluate_topk(lists[name], split, KS)
    vectors = pretrained_vectors(dataset.items, config)
    codes = category_codes(dataset.items, catalog)
    results.update(run_baselines(split, BASELINES, vectors, KS, lists=lists, item_categories=codes))
    return {
        "dataset": data.name,
        "protocol": protocol,
        "test_users": len(split.histories),
        "past_events": split.train.height,
        "future_events": split.test.height,
        "results": results,
        "ratio_interval": ratio_intervals(lists, results, split),
        "timings": timings,
        "machine": machine_facts(),
    }


def best_baseline(results: dict[str, Any]) -> str:
    """The baseline with the highest NDCG@10 over all test users."""
    baselines = [name for name in results if not name.startswith("recsys")]
    return max(baselines, key=lambda name: results[name]["all"]["ndcg@10"])


def ratio_intervals(
    lists: dict[str, np.ndarray], results: dict[str, Any], split: EvalSplit
) -> dict[str, list[float]]:
    """95% bootstrap interval of each recsys variant's NDCG@10 / the best baseline's, over test users.

    A cut with few test users (the dev dataset's global cut has a few dozen) cannot separate
    ratios a tenth apart; the interval says how far each ratio can be trusted.
    """
    rows, truth, _ = split.slices()["all"]
    best = best_baseline(results)
    per_user = {name: per_user_metrics(topk[rows], truth, [10])["ndcg@10"] for name, topk in lists.items()}
    return {
        name: list(ratio_interval(per_user[name], per_user[best]))
        for name in lists
        if name.startswith("recsys")
    }


def markdown(summary: dict[str, Any]) -> str:
    """One table: models as rows, the headline metrics and slices as columns, ratio to the best baseline."""
    results = summary["results"]
    best = best_baseline(results)
    intervals = summary.get("ratio_interval", {})
    users = {s: int(next(iter(results.values()))[s]["users"]) for s, _ in COLUMNS}
    header = [
        "model",
        *(f"{m} {s} (n={users[s]})" if s != "all" else m for s, m in COLUMNS),
        "NDCG@10 / best (95% interval)",
    ]
    lines = [
        f"**{summary['dataset']}, {summary['protocol']}** "
        f"({summary['test_users']} test users; best baseline {best})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, sliced in results.items():
        values = [sliced[s].get(m) for s, m in COLUMNS]
        cells = [f"{v:.4f}" if v is not None else "—" for v in values]
        best_ndcg = results[best]["all"]["ndcg@10"]
        ratio = f"{sliced['all']['ndcg@10'] / best_ndcg:.2f}×" if best_ndcg else "—"
        if name in intervals:
            low, high = intervals[name]
            ratio += f" ({low:.2f}–{high:.2f})"
        label = f"**{name}**" if name.startswith("recsys") else name
        lines.append("| " + " | ".join([label, *cells, ratio]) + " |")
    return "\n".join(lines) + "\n"


def demo_dataset(regime: str, size: str | None, scratch: Path) -> Path:
    """A generated catalog of ``regime`` (``size``: USERS,ITEMS,EVENTS; default: the demo config's)."""
    folder = scratch / f"demo-{regime}"
    shape: list[str] = []
    if size:
        users, items, events = size.split(",")
        shape = ["--users", users, "--items", items, "--events", events]
    subprocess.run([RECSYS, "data", "demo", "--out", str(folder), "--regime", regime, *shape], check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, nargs="*", default=None, help="Dataset folders (default: all shared)"
    )
    parser.add_argument("--regimes", default="", help="Demo regimes to generate and bench, comma-separated")
    parser.add_argument("--demo-size", default=None, help="USERS,ITEMS,EVENTS of the generated catalogs")
    parser.add_argument("--protocol", choices=["per_user", "global", "both"], default="both")
    parser.add_argument("--variants", default="fine_tuned", help=f"Comma-separated of {list(VARIANTS)}")
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: configs/default.yaml)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    protocols = ["per_user", "global"] if args.protocol == "both" else [args.protocol]
    variants = [v for v in args.variants.split(",") if v]
    args.out.mkdir(parents=True, exist_ok=True)
    summaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recsys-quality-") as tmp:
        scratch = Path(tmp)
        shared = sorted(p for p in DATASETS.iterdir() if p.is_dir())
        datasets = args.data if args.data is not None else ([] if args.regimes else shared)
        regimes = [regime for regime in args.regimes.split(",") if regime]
        datasets += [demo_dataset(regime, args.demo_size, scratch) for regime in regimes]
        for data in datasets:
            for protocol in protocols:
                summaries.append(
                    bench_dataset(data, protocol, variants, args.config, scratch / data.name / protocol)
                )
                (args.out / "quality.json").write_text(json.dumps(summaries, indent=2) + "\n")
                (args.out / "quality.md").write_text("\n".join(markdown(s) for s in summaries))
                console.print(markdown(summaries[-1]))
    console.print(f"wrote {args.out / 'quality.json'} and {args.out / 'quality.md'}")


if __name__ == "__main__":
    main()
