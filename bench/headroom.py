"""How far any recommender could get on the generated catalogs: the generator's oracle beside the baselines.

    .venv/bin/python bench/headroom.py [--regimes releases,shop,sessions,drift]
                                       [--demo-size 1000,1500,40000] [--protocol per_user|global|both]

Cuts each generated catalog exactly as ``bench/quality.py`` does (same size, seed and split), fits
the baselines on the past and ranks the future with :mod:`recsys.data.oracle`, which knows the
generator's hidden state (each user's audiences and drift, each item's topic, popularity and
sequel) and, optimistically, how many events each user has after the cut. Its NDCG@10 over the
best baseline's says how much any recipe could show on that cut. Three oracles, by what they know
(:data:`recsys.data.oracle.Knowledge`): ``full``; ``released``, to which items released after the
cut count for nothing (how popular an unreleased item will be is in no data); ``observable``, which
also reads a user's tastes off their history's topics instead of knowing their audiences: the
nearest reference for what a recommender can reach. Prints one table; ``--out`` also writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import get_args

import numpy as np
import polars as pl

from recsys.catalog import ItemCatalog
from recsys.data import load_dataset
from recsys.data.demo import DemoSpec, Regime, regime_world, write_demo
from recsys.data.oracle import Knowledge, oracle_topk
from recsys.evaluation.protocol import BASELINES, DEFAULT_TEST_SHARE, evaluate_topk, make_split, run_baselines
from recsys.models.category import category_codes

KS = [10, 100]
ORACLES: tuple[Knowledge, ...] = get_args(Knowledge)
TEXT_FREE = [name for name in BASELINES if name != "pretrained_text"]
"""The pretrained-text baseline needs the encoder and is never the best on these cuts."""


def headroom(regime: Regime, size: tuple[int, int, int], protocol: str, scratch: Path) -> dict[str, object]:
    users, items, events = size
    spec = DemoSpec(users=users, items=items, events=events, regime=regime)
    folder = scratch / regime
    write_demo(folder, spec)
    dataset = load_dataset(folder)
    catalog = ItemCatalog.from_items(dataset.items)
    split = make_split(dataset.interactions, catalog, protocol, DEFAULT_TEST_SHARE[protocol])  # type: ignore[arg-type]
    counts = dict(split.test.group_by("user_id").len().iter_rows())
    future = np.asarray([counts.get(user, 0) for user in split.histories.user_ids], dtype=np.float64)
    world = regime_world(spec)
    oracle = {
        knowledge: evaluate_topk(
            oracle_topk(
                world,
                catalog.ids,
                split.histories,
                future,
                max(KS),
                continue_sessions=protocol == "per_user",
                cutoff=split.cutoff,
                knowledge=knowledge,
            ),
            split,
            KS,
        )["all"]["ndcg@10"]
        for knowledge in ORACLES
    }
    results = run_baselines(split, TEXT_FREE, ks=KS, item_categories=category_codes(dataset.items, catalog))
    best = max(results, key=lambda name: results[name]["all"]["ndcg@10"])
    best_ndcg = results[best]["all"]["ndcg@10"]
    return {
        "regime": regime,
        "protocol": protocol,
        "test_users": len(split.histories),
        "best_baseline": best,
        "best_ndcg@10": best_ndcg,
        **{f"oracle_{name}_ndcg@10": value for name, value in oracle.items()},
        **{f"oracle_{name}_over_best": value / best_ndcg for name, value in oracle.items()},
        "baselines_ndcg@10": {name: metrics["all"]["ndcg@10"] for name, metrics in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--regimes", default="releases,shop,sessions,drift")
    parser.add_argument("--demo-size", default="1000,1500,40000", help="USERS,ITEMS,EVENTS")
    parser.add_argument("--protocol", choices=["per_user", "global", "both"], default="both")
    parser.add_argument("--out", type=Path, default=None, help="Also write the rows as JSON here")
    args = parser.parse_args()
    size = tuple(int(n) for n in args.demo_size.split(","))
    protocols = ["per_user", "global"] if args.protocol == "both" else [args.protocol]
    rows = []
    with tempfile.TemporaryDirectory(prefix="recsys-headroom-") as tmp:
        for regime in [r for r in args.regimes.split(",") if r]:
            for protocol in protocols:
                rows.append(headroom(regime, size, protocol, Path(tmp)))  # type: ignore[arg-type]
    table = pl.DataFrame([{k: v for k, v in row.items() if k != "baselines_ndcg@10"} for row in rows])
    with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=4, tbl_width_chars=200):
        print(table)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
